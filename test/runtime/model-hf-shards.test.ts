import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { readHfDirectory, writeHfDirectory } from '../../src/runtime/model/hf.ts';
import { planShards } from '../../src/runtime/model/safetensors-shards.ts';
import { syntheticPresets, syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import { assertSameWeights, minimalTokenizerJson, tempDir } from './model-helpers.ts';

test('planShards packs tensors in order up to the byte limit, a bigger tensor alone, named as transformers does', () => {
  assert.deepEqual(planShards([['a', 6], ['b', 4], ['c', 3], ['d', 20], ['e', 1]], 10), [
    { file: 'model-00001-of-00004.safetensors', names: ['a', 'b'], bytes: 10 },
    { file: 'model-00002-of-00004.safetensors', names: ['c'], bytes: 3 },
    { file: 'model-00003-of-00004.safetensors', names: ['d'], bytes: 20 },
    { file: 'model-00004-of-00004.safetensors', names: ['e'], bytes: 1 },
  ]);
  assert.deepEqual(planShards([['a', 6], ['b', 4]], 10), [{ file: 'model.safetensors', names: ['a', 'b'], bytes: 10 }]);
});

test('a model over the shard limit is written as shards + index and reads back exactly; a rewrite replaces the layout', async () => {
  const spec = syntheticSpec(syntheticPresets.tiny);
  const weights = syntheticWeights(spec, 3);
  const dir = await tempDir('hf-shards');
  await writeFile(join(dir, 'model.safetensors'), 'stale single file');
  await writeHfDirectory({ spec, weights }, dir, { tokenizerJson: minimalTokenizerJson, maxShardBytes: 200_000 });
  const files = (await readdir(dir)).sort();
  assert.ok(!files.includes('model.safetensors'), 'the stale single file is gone (readers would take it first)');
  const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
  assert.ok(shards.length >= 3, `several shards: ${files.join(', ')}`);
  const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8'));
  assert.deepEqual(Object.keys(index.weight_map).sort(), [...weights.keys()].sort());
  assert.equal(index.metadata.total_size, [...weights.values()].reduce((a, t) => a + t.data.length * 4, 0));
  const back = await readHfDirectory(dir);
  assert.deepEqual(back.spec, spec);
  assertSameWeights(back.weights, weights);

  await writeHfDirectory({ spec, weights }, dir, { tokenizerJson: minimalTokenizerJson });
  assert.ok(!(await readdir(dir)).includes('model.safetensors.index.json'), 'a single-file rewrite drops the index');
  assertSameWeights((await readHfDirectory(dir)).weights, weights);
});
