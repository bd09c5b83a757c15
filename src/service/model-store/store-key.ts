import { createHash } from 'node:crypto';
import { canonicalJson, type JsonValue } from './canonical-json.ts';
import { StoreInputError } from './errors.ts';

/**
 * Version of what an entry holds (the checkpoint export layout and entry.json). It is hashed into
 * every key, so bumping it when the export format changes makes old entries unreachable instead of
 * loading them as if they were current.
 */
export const STORE_FORMAT_VERSION = 1;

/** A SHA-256 in lowercase hex: store keys, weight digests, file digests. */
export type HexDigest = string;

const HEX_DIGEST = /^[0-9a-f]{64}$/;

export function isHexDigest(value: unknown): value is HexDigest {
  return typeof value === 'string' && HEX_DIGEST.test(value);
}

/**
 * What an entry is the result of, as JSON: the prune recipe with every setting spelled out (the
 * server builds it from the shared prune option table, src/service/prune/prune-store-key.ts). The
 * store does not interpret it: it hashes all of it, so any field added to the recipe changes the
 * key without a change here.
 */
export type EntryRecipe = { [field: string]: JsonValue | undefined };

/**
 * The content address of a pruned variant: SHA-256 of the canonical JSON of
 * {format, source, recipe}. Stable across processes, key order and releases (until
 * STORE_FORMAT_VERSION changes).
 */
export function storeKey(sourceDigest: HexDigest, recipe: EntryRecipe): HexDigest {
  if (!isHexDigest(sourceDigest)) throw new StoreInputError(`source digest must be 64 lowercase hex characters, got ${JSON.stringify(sourceDigest)}`);
  checkRecipe(recipe);
  const material = canonicalJson({ format: STORE_FORMAT_VERSION, source: sourceDigest, recipe: recipe as unknown as JsonValue });
  return createHash('sha256').update(material).digest('hex');
}

/** A recipe must be a plain JSON object; a StoreInputError names what is wrong and where. */
export function checkRecipe(recipe: EntryRecipe): void {
  if (recipe === null || typeof recipe !== 'object' || Array.isArray(recipe)) throw new StoreInputError(`recipe must be a JSON object, got ${JSON.stringify(recipe)}`);
  if (Object.keys(recipe).every((k) => recipe[k] === undefined)) throw new StoreInputError('recipe must have at least one field');
  canonicalJson(recipe, 'recipe'); // refuses NaN, Maps, ... anywhere inside, with the path
}
