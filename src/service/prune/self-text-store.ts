/**
 * `--recovery-data self` text kept in the model store: an entry of its own whose key is the source
 * model's digest and the sampling recipe (tokens, seed, prompts), holding the sampled token ids.
 * The next prune of the same model with the same recipe reads them instead of sampling again.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { SelfTextCache, SelfTextRecipe } from '../../mop/self-text.ts';
import { type EntryRecipe, type HexDigest, type ModelStore, storeKey } from '../model-store/index.ts';

/** The entry's one file: the token ids as little-endian int32. */
export const SELF_TEXT_FILE = 'self-text.i32';

export function selfTextStoreKey(sourceDigest: HexDigest, recipe: SelfTextRecipe): HexDigest {
  return storeKey(sourceDigest, recipe as unknown as EntryRecipe);
}

export function storeSelfTextCache(store: ModelStore, sourceDigest: HexDigest): SelfTextCache {
  return {
    async load(recipe) {
      const key = selfTextStoreKey(sourceDigest, recipe);
      // Only an entry whose file still hashes to what was recorded.
      if (!(await store.verify(key, { contents: true })).ok) return undefined;
      const entry = await store.get(key);
      if (!entry) return undefined;
      const bytes = await fs.readFile(join(entry.dir, SELF_TEXT_FILE));
      const ids = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      return ids.length === recipe.tokens ? Array.from(ids) : undefined;
    },
    async save(recipe, tokens) {
      const data = Buffer.from(Int32Array.from(tokens).buffer);
      await store.put(selfTextStoreKey(sourceDigest, recipe), (dir) => fs.writeFile(join(dir, SELF_TEXT_FILE), data), { sourceDigest, recipe: recipe as unknown as EntryRecipe });
    },
  };
}
