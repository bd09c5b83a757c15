import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { openMaskedForward } from '../../src/runtime/calibration/ort-masked-forward.ts';
import { type ModelSpec, weightName } from '../../src/runtime/model/spec.ts';
import { syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { fullPlan, type PruningPlan } from '../../src/mop/pruning-plan.ts';
import { applyPlan, type ModelWeights, removeKvGroups, removeLayer, removeNeurons, scatterPlan } from '../../src/mop/surgery.ts';
import { referenceForward } from '../helpers/reference-forward.ts';
import { maxAbsDiff } from '../helpers/logits.ts';
import { bundled } from './helpers.ts';

const TOL = 1e-4;

/** The dense model with the plan's structures zeroed in the weights: masking, done independently of the graph. */
function zeroedOut(model: ModelWeights, plan: PruningPlan): Weights {
  const w: Weights = new Map([...model.weights].map(([k, t]) => [k, { shape: t.shape, data: t.data.slice() }]));
  plan.layers.forEach((l, i) => {
    const spec = model.spec.layers[i]!;
    if (spec.heads > 0) {
      const o = w.get(weightName.o(i))!;
      const width = (spec.heads / spec.kvHeads) * spec.headDim; // W_O columns of one KV group
      const cols = o.shape[1]!;
      for (let r = 0; r < o.shape[0]!; r++) {
        for (let c = 0; c < cols; c++) if (!l.attention || !l.kvGroups[Math.floor(c / width)]) o.data[r * cols + c] = 0;
      }
    }
    if (spec.ffn > 0) {
      const down = w.get(weightName.down(i))!;
      const cols = down.shape[1]!;
      for (let r = 0; r < down.shape[0]!; r++) for (let c = 0; c < cols; c++) if (!l.mlp || !l.neurons[c]) down.data[r * cols + c] = 0;
    }
  });
  return w;
}

/** The dense model masked by the calibration graph's inputs vs the pruned model, three ways. */
async function assertSurgeryMatchesMasking(model: ModelWeights, plan: PruningPlan, pruned: ModelWeights, tokens: number[]): Promise<void> {
  const T = tokens.length;
  const ids = Int32Array.from(tokens);
  const reference = referenceForward(pruned.spec, pruned.weights, tokens);
  for (const attention of ['gqa', 'plain'] as const) {
    const dense = await openMaskedForward(model.spec, model.weights, { maxSeqLen: T, threads: 1, attention });
    const masked = (await dense.run({ rows: 1, seqLen: T, ids }, plan, { logits: true })).logits!;
    await dense.release();
    const d1 = maxAbsDiff(masked, reference);
    assert.ok(d1 <= TOL, `masked dense (calibration graph, ${attention} attention) vs pruned (reference forward): max |Δlogit| ${d1}`);
  }

  const zeroed = referenceForward(model.spec, zeroedOut(model, plan), tokens);
  const d2 = maxAbsDiff(zeroed, reference);
  assert.ok(d2 <= TOL, `zeroed dense vs pruned, both reference forward: max |Δlogit| ${d2}`);

  // The serving graph runs the pruned spec too (per-layer shapes, absent sub-blocks).
  const session = await ModelSession.create(pruned.spec, pruned.weights, { maxBatch: 1, maxContext: T, logits: 'all', threads: 1 });
  const served = await session.prefill(0, tokens);
  await session.release();
  const d3 = maxAbsDiff(served, reference);
  assert.ok(d3 <= TOL, `pruned (serving graph) vs pruned (reference forward): max |Δlogit| ${d3}`);
}

const spec: ModelSpec = syntheticSpec({ vocabSize: 97, hidden: 64, layers: 3, heads: 4, kvHeads: 2, ffn: 48, maxContext: 64 });
const synthetic: ModelWeights = { spec, weights: syntheticWeights(spec, 3) };
const tokens = [1, 5, 17, 42, 8, 3, 60, 61, 2, 33, 90, 12];

describe('weight surgery equals masking the structure out of the dense model', () => {
  it('removing one KV group removes its query heads, its KV head and its W_O columns', async () => {
    const pruned = removeKvGroups(synthetic, 1, [0]);
    assert.deepEqual(pruned.spec.layers[1], { heads: 2, kvHeads: 1, headDim: 16, ffn: 48 });
    assert.deepEqual(pruned.weights.get(weightName.q(1))!.shape, [32, 64]);
    assert.deepEqual(pruned.weights.get(weightName.o(1))!.shape, [64, 32]);
    // Group 1 survives: its rows are the dense rows of query heads 2,3 and KV head 1.
    const q = synthetic.weights.get(weightName.q(1))!.data;
    assert.deepEqual(pruned.weights.get(weightName.q(1))!.data, q.slice(32 * 64, 64 * 64));
    const plan = fullPlan(spec);
    plan.layers[1]!.kvGroups[0] = 0;
    await assertSurgeryMatchesMasking(synthetic, plan, pruned, tokens);
  });

  it('removing neurons removes rows of gate/up and columns of down', async () => {
    const pruned = removeNeurons(synthetic, 2, [0, 7, 47]);
    assert.equal(pruned.spec.layers[2]!.ffn, 45);
    assert.deepEqual(pruned.weights.get(weightName.down(2))!.shape, [64, 45]);
    const plan = fullPlan(spec);
    for (const j of [0, 7, 47]) plan.layers[2]!.neurons[j] = 0;
    await assertSurgeryMatchesMasking(synthetic, plan, pruned, tokens);
  });

  it('removing a layer drops it from the list', async () => {
    const pruned = removeLayer(synthetic, 1);
    assert.equal(pruned.spec.layers.length, 2);
    assert.equal(pruned.weights.get(weightName.q(1))!.data, synthetic.weights.get(weightName.q(2))!.data);
    const plan = fullPlan(spec);
    plan.layers[1]!.attention = false;
    plan.layers[1]!.mlp = false;
    await assertSurgeryMatchesMasking(synthetic, plan, pruned, tokens);
  });

  it('a mixed plan: whole attention sub-block gone, all neurons of a layer gone, groups and neurons elsewhere', async () => {
    const plan = fullPlan(spec);
    plan.layers[0]!.attention = false; // MLP-only layer
    plan.layers[0]!.neurons[3] = 0;
    plan.layers[1]!.neurons.fill(0); // attention-only layer
    plan.layers[1]!.kvGroups[1] = 0;
    plan.layers[2]!.kvGroups[0] = 0;
    plan.layers[2]!.kvGroups[1] = 0; // all groups: attention gone by width
    plan.layers[2]!.neurons[10] = 0;
    const pruned = applyPlan(synthetic, plan);
    assert.deepEqual(pruned.spec.layers, [
      { heads: 0, kvHeads: 0, headDim: 16, ffn: 47 },
      { heads: 2, kvHeads: 1, headDim: 16, ffn: 0 },
      { heads: 0, kvHeads: 0, headDim: 16, ffn: 47 },
    ]);
    await assertSurgeryMatchesMasking(synthetic, plan, pruned, tokens);
  });

  it('with q/k/v biases (Qwen2): a removed KV group takes its bias entries, and the pruned model is the reference of its weights', async () => {
    const biased: ModelSpec = { ...spec, family: 'qwen2', attentionBias: true };
    const weights = syntheticWeights(biased, 4);
    for (const [name, t] of weights) if (name.endsWith('.bias')) t.data.forEach((_, i) => (t.data[i] = Math.cos(i * 0.9) * 0.7));
    const model: ModelWeights = { spec: biased, weights };
    const plan = fullPlan(biased);
    plan.layers[1]!.kvGroups[0] = 0;
    plan.layers[2]!.kvGroups[1] = 0;
    plan.layers[0]!.neurons[5] = 0;
    const pruned = applyPlan(model, plan);
    assert.equal(pruned.spec.attentionBias, true);
    // Layer 1 keeps group 1: query heads 2, 3 and KV head 1 (head size 16), bias entries and all.
    const dense = (name: string) => weights.get(name)!.data;
    assert.deepEqual(pruned.weights.get(weightName.qBias(1))!.data, dense(weightName.qBias(1)).slice(32, 64));
    assert.deepEqual(pruned.weights.get(weightName.kBias(1))!.data, dense(weightName.kBias(1)).slice(16, 32));
    assert.deepEqual(pruned.weights.get(weightName.vBias(1))!.data, dense(weightName.vBias(1)).slice(16, 32));
    // Layer 2 keeps group 0.
    assert.deepEqual(pruned.weights.get(weightName.qBias(2))!.data, dense(weightName.qBias(2)).slice(0, 32));
    assert.deepEqual(pruned.weights.get(weightName.kBias(2))!.shape, [16]);
    await assertSurgeryMatchesMasking(model, plan, pruned, tokens);
    // Recovered weights go back to their base positions, biases included.
    const moved: ModelWeights = { spec: pruned.spec, weights: new Map([...pruned.weights].map(([n, t]) => [n, { shape: t.shape, data: t.data.map((x) => x + 1) }])) };
    const back = scatterPlan(model, plan, moved);
    assert.deepEqual(back.get(weightName.kBias(1))!.data.slice(16, 32), moved.weights.get(weightName.kBias(1))!.data);
    assert.deepEqual(back.get(weightName.kBias(1))!.data.slice(0, 16), dense(weightName.kBias(1)).slice(0, 16));
  });

  it('on the bundled stories260K (head size 8, padded for GQA): a KV group, neurons and a layer', async () => {
    const { model } = await bundled();
    const plan = fullPlan(model.spec);
    plan.layers[0]!.kvGroups[2] = 0;
    plan.layers[3]!.neurons.fill(0, 100, 140);
    plan.layers[2]!.attention = false;
    plan.layers[2]!.mlp = false;
    const pruned = applyPlan(model, plan);
    assert.equal(pruned.spec.layers.length, 4);
    assert.deepEqual(pruned.spec.layers[0], { heads: 6, kvHeads: 3, headDim: 8, ffn: 172 });
    assert.equal(pruned.spec.layers[2]!.ffn, 132);
    await assertSurgeryMatchesMasking(model, plan, pruned, [1, 403, 261, 378, 395, 285, 275, 261, 280, 277, 423, 269, 316, 268, 295, 283]);
  });
});
