import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { SelfTextRecipe } from '../../src/mop/self-text.ts';
import { ModelStore } from '../../src/service/model-store/index.ts';
import { SELF_TEXT_FILE, selfTextStoreKey, storeSelfTextCache } from '../../src/service/prune/self-text-store.ts';
import { sha256, tempDir } from './model-store-helpers.ts';

const recipe: SelfTextRecipe = { kind: 'self-recovery-text', tokens: 5, seed: 1, temperature: 1, maxSampleTokens: 256, prompts: [[1, 2]] };

describe('self-generated recovery text in the model store', () => {
  it('is kept under a key of its own (source digest + sampling recipe) and read back by the next prune', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const source = sha256('dense weights');
    const cache = storeSelfTextCache(store, source);
    assert.equal(await cache.load(recipe), undefined);
    await cache.save(recipe, [5, 6, 7, 8, 9]);
    assert.deepEqual(await cache.load(recipe), [5, 6, 7, 8, 9]);
    // Another seed, or another source model, is another entry.
    assert.equal(await cache.load({ ...recipe, seed: 2 }), undefined);
    assert.equal(await storeSelfTextCache(store, sha256('other weights')).load(recipe), undefined);
    assert.notEqual(selfTextStoreKey(source, recipe), selfTextStoreKey(source, { ...recipe, prompts: [[1]] }));
  });

  it('an entry whose file no longer holds what was recorded is sampled again, not read', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const source = sha256('dense weights');
    const cache = storeSelfTextCache(store, source);
    await cache.save(recipe, [5, 6, 7, 8, 9]);
    const file = path.join(store.root, 'entries', selfTextStoreKey(source, recipe), SELF_TEXT_FILE);
    await fs.writeFile(file, Buffer.from(Int32Array.from([9, 9, 9, 9, 9]).buffer));
    assert.equal(await cache.load(recipe), undefined);
  });
});

describe('the store key of a prune that recovers on self-generated text', () => {
  it('needs no file and differs from the bundled-text prune and from another sample size', async () => {
    const { defaultPruneSettings } = await import('../../src/service/prune/prune-options.ts');
    const { pruneStoreKey } = await import('../../src/service/prune/prune-store-key.ts');
    const base = { ...defaultPruneSettings(), target: 0.4 };
    const source = sha256('dense weights');
    const self = await pruneStoreKey(source, { ...base, recoveryData: 'self' }, 1000);
    assert.equal(self.recipe.recoveryData, 'self');
    assert.notEqual(self.key, (await pruneStoreKey(source, base, 1000)).key);
    assert.notEqual(self.key, (await pruneStoreKey(source, { ...base, recoveryData: 'self', recoverySelfTokens: 4096 }, 1000)).key);
  });
});
