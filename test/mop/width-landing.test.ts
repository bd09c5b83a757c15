import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { widthRemoval } from '../../src/mop/candidates.ts';
import { paramCost } from '../../src/mop/prune-cost.ts';
import { fullPlan, keptNeurons } from '../../src/mop/pruning-plan.ts';
import { landOnTarget } from '../../src/mop/width-landing.ts';
import { chunked, normalized, type Unit } from '../../src/mop/width-units.ts';
import type { ModelSpec } from '../../src/runtime/model/spec.ts';

/** One layer: 4 KV groups of one head, `ffn` neurons; importance rises with the index (0 goes first). */
function layer(ffn: number, multiple = 1) {
  const base: ModelSpec = { architecture: 'llama', vocabSize: 16, hidden: 8, layers: [{ heads: 4, kvHeads: 4, headDim: 2, ffn }], normEps: 1e-5, rope: { theta: 10000 }, tiedEmbeddings: true, bosTokenId: 1, eosTokenIds: [2], maxContext: 8 };
  const plan = fullPlan(base);
  const kv = normalized('kv', 0, plan.layers[0]!.kvGroups, Float64Array.from([5, 6, 7, 8]), paramCost.kvGroup(base, 0), 'none');
  const neurons = chunked(normalized('neuron', 0, plan.layers[0]!.neurons, Float64Array.from({ length: ffn }, (_, j) => 1 + j / 100), paramCost.neuron(base), 'none'), multiple);
  const removed = (set: ReadonlySet<Unit>) => (set.size === 0 ? 0 : widthRemoval(base, plan, set, paramCost).removedParams);
  return { base, plan, kv, neurons, removed, all: [...kv, ...neurons] };
}

describe('landing the finishing width step on the target (exact costs from the plan)', () => {
  it('a set already within the tolerance is kept as it is', () => {
    const l = layer(20);
    const taken = new Set(l.neurons.slice(0, 3));
    assert.equal(landOnTarget(l.base, l.plan, l.all, taken, { remaining: l.removed(taken) + 2, tolerance: 5 }, paramCost, 1), taken);
  });

  it('past the target, the coarse unit goes back and the least important fine units fill in, as close as they can', () => {
    const l = layer(20);
    const per = paramCost.neuron(l.base);
    // A KV group (64 parameters) is 15 past two neurons' worth (48) and one.
    const landed = landOnTarget(l.base, l.plan, l.all, new Set([l.kv[0]!]), { remaining: 2 * per + 1, tolerance: 0.2 * per }, paramCost, 1);
    assert.deepEqual([...landed], l.neurons.slice(0, 2));
  });

  it('short of the target with only coarse units left, it swaps: a KV group in, a neuron chunk back', () => {
    // Two chunks of 4 neurons; the first taken. The target is one KV group: nothing fits the 34 left, so the
    // KV group goes in and the chunk comes back.
    const l = layer(8, 4);
    const group = paramCost.kvGroup(l.base, 0);
    const landed = landOnTarget(l.base, l.plan, l.all, new Set([l.neurons[0]!]), { remaining: group + 2, tolerance: 5 }, paramCost, 4);
    assert.deepEqual([...landed], [l.kv[0]]);
    assert.ok(Math.abs(l.removed(landed) - group - 2) <= 5);
  });

  it('never leaves a layer off the width multiple: a whole chunk goes only after the layer\'s remainder chunk', () => {
    // 10 neurons, multiple 4: the remainder chunk (2), then two chunks of 4.
    const l = layer(10, 4);
    assert.deepEqual(l.neurons.map((u) => u.indices.length), [2, 4, 4]);
    const per = paramCost.neuron(l.base);
    for (let want = 1; want <= 10; want++) {
      const landed = landOnTarget(l.base, l.plan, l.all, new Set(), { remaining: want * per, tolerance: 1.5 * per }, paramCost, 4);
      const next = widthRemoval(l.base, l.plan, landed, paramCost).plan;
      const kept = keptNeurons(next, 0);
      assert.ok(kept === 10 || kept % 4 === 0, `${want} neurons' worth: ${kept} kept`);
    }
  });

  it('where nothing lands, the greedy set comes back unchanged (the prune then reports the target out of reach)', () => {
    const l = layer(8, 8);
    const taken = new Set<Unit>();
    // Half a KV group's worth: the groups and the one 8-neuron chunk are all too coarse.
    assert.equal(landOnTarget(l.base, l.plan, l.all, taken, { remaining: paramCost.kvGroup(l.base, 0) / 2, tolerance: 1 }, paramCost, 8), taken);
  });
});
