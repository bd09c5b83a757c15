import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { syntheticPresets, syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { canonicalJson, digestFile, digestWeights, type EntryRecipe, StoreInputError, storeKey } from '../../src/service/model-store/index.ts';
import { recipe, sha256, tempDir } from './model-store-helpers.ts';

const source = sha256('source model');

describe('store keys', () => {
  it('are equal for equal recipes whatever order their keys were written in', () => {
    const a = recipe({ recovery: { steps: 100, lr: 1e-4 }, options: { stepLayers: 1, depthUnit: 'layer' } });
    const b = Object.fromEntries(Object.entries({ ...a, recovery: { lr: 1e-4, steps: 100 }, options: { depthUnit: 'layer', stepLayers: 1 } }).reverse()) as unknown as EntryRecipe;
    assert.equal(storeKey(source, a), storeKey(source, b));
    assert.match(storeKey(source, a), /^[0-9a-f]{64}$/);
  });

  it('differ when the source digest or any recipe field changes', () => {
    const base = recipe();
    const variants: EntryRecipe[] = [
      recipe({ strategy: 'width' }),
      recipe({ criterion: 'loss' }),
      recipe({ target: 0.41 }),
      recipe({ calibrationDigest: sha256('other text') }),
      recipe({ samples: 33 }),
      recipe({ seqLen: 256 }),
      recipe({ seed: 1 }),
      recipe({ recovery: { steps: 1 } }),
      recipe({ options: { referenceBlocks: 1000 } }),
    ];
    const keys = new Set([storeKey(source, base), storeKey(sha256('other model'), base), ...variants.map((r) => storeKey(source, r))]);
    assert.equal(keys.size, variants.length + 2);
  });

  it('are pinned: the canonical form of a recipe does not drift between releases', () => {
    // The documented material, spelled out: a change here orphans every existing store entry.
    const material =
      `{"format":1,"recipe":{"calibrationDigest":"${sha256('calibration text')}","criterion":"ppl","recovery":null,` +
      `"samples":32,"seed":0,"seqLen":128,"strategy":"mop","target":0.4},"source":"${sha256('source model')}"}`;
    assert.equal(storeKey(sha256('source model'), recipe()), sha256(material));
    assert.equal(storeKey(sha256('source model'), recipe()), '3d6ef867bed4dd58a8afb0ceb9357f75388e32bea7ff905454d38fa17a83d6ed');
  });

  it('refuse a malformed source digest, or a recipe that is not a non-empty JSON object', () => {
    assert.throws(() => storeKey('abc', recipe()), (e: unknown) => e instanceof StoreInputError && /source digest/.test(e.message));
    assert.throws(() => storeKey(source, null as unknown as EntryRecipe), /recipe must be a JSON object, got null/);
    assert.throws(() => storeKey(source, [1] as unknown as EntryRecipe), /recipe must be a JSON object/);
    assert.throws(() => storeKey(source, { target: undefined }), /recipe must have at least one field/);
  });

  it('hash every field of the recipe, including fields the store has never heard of', () => {
    assert.notEqual(storeKey(source, recipe({ recoveryEpochs: 2 })), storeKey(source, recipe()));
  });

  it('refuse values JSON cannot hash exactly, with the path that holds them', () => {
    assert.throws(() => storeKey(source, recipe({ recovery: { lr: Number.NaN } })), (e: unknown) => e instanceof StoreInputError && /recipe\.recovery\.lr is NaN/.test(e.message));
    assert.throws(() => storeKey(source, recipe({ options: { mask: new Map() as never } })), /recipe\.options\.mask is a Map/);
    assert.throws(() => storeKey(source, recipe({ recovery: [1, undefined as never] })), /recipe\.recovery\[1\] is undefined/);
  });
});

describe('canonical JSON', () => {
  it('sorts keys at every level, drops undefined properties and keeps array order', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [3, 1], c: undefined, b: 'x' } }), '{"a":{"b":"x","d":[3,1]},"b":1}');
  });
});

describe('weight digests', () => {
  const spec = syntheticSpec(syntheticPresets.tiny);
  const weights = syntheticWeights(spec, 3);

  it('do not depend on the order the weights were inserted in', () => {
    const reversed: Weights = new Map([...weights].reverse());
    assert.equal(digestWeights(spec, reversed), digestWeights(spec, weights));
  });

  it('change when one weight value changes', () => {
    const changed: Weights = new Map(weights);
    const t = weights.get('model.norm.weight')!;
    const data = t.data.slice();
    data[5] = Math.fround(data[5]! + 1e-6);
    changed.set('model.norm.weight', { shape: t.shape, data });
    assert.notEqual(digestWeights(spec, changed), digestWeights(spec, weights));
  });

  it('change when the spec or a shape changes but the bytes do not', () => {
    assert.notEqual(digestWeights({ ...spec, normEps: 1e-6 }, weights), digestWeights(spec, weights));
    const reshaped: Weights = new Map(weights);
    const t = weights.get('model.layers.0.mlp.up_proj.weight')!;
    reshaped.set('model.layers.0.mlp.up_proj.weight', { shape: [t.shape[1]!, t.shape[0]!], data: t.data });
    assert.notEqual(digestWeights(spec, reshaped), digestWeights(spec, weights));
  });

  it('refuse a tensor whose data does not fill its shape, naming it', () => {
    const bad: Weights = new Map(weights);
    bad.set('model.norm.weight', { shape: [64], data: new Float32Array(63) });
    assert.throws(() => digestWeights(spec, bad), (e: unknown) => e instanceof StoreInputError && /model\.norm\.weight has 63 values/.test(e.message));
  });

  it('hash a view of a larger buffer by the view alone', () => {
    const t = weights.get('model.norm.weight')!;
    const big = new Float32Array(t.data.length + 8);
    big.set(t.data, 4);
    const viewed: Weights = new Map(weights);
    viewed.set('model.norm.weight', { shape: t.shape, data: big.subarray(4, 4 + t.data.length) });
    assert.equal(digestWeights(spec, viewed), digestWeights(spec, weights));
  });
});

describe('file digests', () => {
  it('are the SHA-256 of the file bytes', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'calibration.txt');
    const text = 'Once upon a time '.repeat(10_000);
    await fs.writeFile(file, text);
    assert.equal(await digestFile(file), createHash('sha256').update(text).digest('hex'));
  });
});
