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
 * Everything that decides what a prune produces from a given source model. Two requests with equal
 * recipes (and the same source) are the same entry, so anything that changes the result must be in
 * here: the fixed fields below, `recovery` for a recovery step, `options` for the rest (importance
 * criterion, step size, depth unit, reference block count of an already pruned source, ...).
 */
export interface PruneRecipe {
  strategy: string;
  criterion: string;
  /** Fraction of block parameters removed, in (0, 1). */
  target: number;
  /** SHA-256 of the calibration text's bytes (see digestFile). */
  calibrationDigest: HexDigest;
  samples: number;
  seqLen: number;
  seed: number;
  /** Recovery (fine-tuning) recipe after pruning, opaque to the store; null for none. */
  recovery: JsonValue;
  /** Any other setting that changes the result; keys are free-form. */
  options?: { [key: string]: JsonValue | undefined };
}

/**
 * The content address of a pruned variant: SHA-256 of the canonical JSON of
 * {format, source, recipe}. Stable across processes, key order and releases (until
 * STORE_FORMAT_VERSION changes).
 */
export function storeKey(sourceDigest: HexDigest, recipe: PruneRecipe): HexDigest {
  if (!isHexDigest(sourceDigest)) throw new StoreInputError(`source digest must be 64 lowercase hex characters, got ${JSON.stringify(sourceDigest)}`);
  checkRecipe(recipe);
  const material = canonicalJson({ format: STORE_FORMAT_VERSION, source: sourceDigest, recipe: recipe as unknown as JsonValue });
  return createHash('sha256').update(material).digest('hex');
}

/** Field-by-field check; a StoreInputError names the first bad field. */
export function checkRecipe(recipe: PruneRecipe): void {
  if (recipe === null || typeof recipe !== 'object') throw new StoreInputError(`recipe must be an object`);
  const bad = (field: string, want: string) => new StoreInputError(`recipe.${field} must be ${want}, got ${JSON.stringify((recipe as unknown as Record<string, unknown>)[field])}`);
  if (typeof recipe.strategy !== 'string' || recipe.strategy === '') throw bad('strategy', 'a non-empty string');
  if (typeof recipe.criterion !== 'string' || recipe.criterion === '') throw bad('criterion', 'a non-empty string');
  if (!(typeof recipe.target === 'number' && recipe.target > 0 && recipe.target < 1)) throw bad('target', 'a number in (0, 1)');
  if (!isHexDigest(recipe.calibrationDigest)) throw bad('calibrationDigest', '64 lowercase hex characters');
  if (!(Number.isInteger(recipe.samples) && recipe.samples > 0)) throw bad('samples', 'a positive integer');
  if (!(Number.isInteger(recipe.seqLen) && recipe.seqLen > 0)) throw bad('seqLen', 'a positive integer');
  if (!Number.isInteger(recipe.seed)) throw bad('seed', 'an integer');
  if (recipe.recovery === undefined) throw bad('recovery', 'a JSON value (null for none)');
  if (recipe.options !== undefined && (recipe.options === null || typeof recipe.options !== 'object' || Array.isArray(recipe.options))) {
    throw bad('options', 'an object when present');
  }
  canonicalJson(recipe, 'recipe'); // refuses NaN, Maps, ... anywhere inside, with the path
}
