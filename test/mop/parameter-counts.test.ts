import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expectedWeightShapes, type ModelSpec, parameterCounts } from '../../src/runtime/model/spec.ts';
import { Xoshiro128ss } from '../../src/runtime/engine/rng.ts';
import { runMop, TARGET_TOLERANCE } from '../../src/mop/mop.ts';
import { fullPlan, kvGroupParams, plannedBlockParams, plannedSpec } from '../../src/mop/pruning-plan.ts';
import { applyPlan, type ModelWeights } from '../../src/mop/surgery.ts';
import { bundled } from './helpers.ts';

/** The model with zero q/k/v biases added (Qwen2's layout). */
function biasedCopy(model: ModelWeights): ModelWeights {
  const spec: ModelSpec = { ...model.spec, family: 'qwen2', attentionBias: true };
  const weights = new Map(model.weights);
  for (const [name, shape] of expectedWeightShapes(spec)) if (!weights.has(name)) weights.set(name, { shape, data: new Float32Array(shape[0]!) });
  return { spec, weights };
}

describe('parameter counts', () => {
  for (const biased of [false, true]) {
    it(`the plan arithmetic agrees with parameterCounts of the surgically pruned model, for random plans${biased ? ' (with q/k/v biases)' : ''}`, async () => {
      const { model: bundledModel } = await bundled();
      const model = biased ? biasedCopy(bundledModel) : bundledModel;
      const rng = new Xoshiro128ss(9);
      for (let trial = 0; trial < 20; trial++) {
        const plan = fullPlan(model.spec);
        for (const l of plan.layers) {
          const p = rng.nextFloat();
          l.kvGroups.forEach((_, g) => (l.kvGroups[g] = rng.nextFloat() < p ? 0 : 1));
          l.neurons.forEach((_, j) => (l.neurons[j] = rng.nextFloat() < p ? 0 : 1));
          if (rng.nextFloat() < 0.15) l.attention = false;
          if (rng.nextFloat() < 0.15) l.mlp = false;
        }
        if (plannedSpec(model.spec, plan).layers.length === 0) continue;
        const pruned = applyPlan(model, plan);
        assert.equal(plannedBlockParams(model.spec, plan), parameterCounts(pruned.spec).blocks);
        const counted = [...pruned.weights].filter(([n]) => n.startsWith('model.layers.')).reduce((s, [, t]) => s + t.data.length, 0);
        assert.equal(counted, parameterCounts(pruned.spec).blocks, 'the tensors hold exactly the counted parameters');
      }
      const oneGroupLess = fullPlan(model.spec);
      oneGroupLess.layers[0]!.kvGroups[0] = 0;
      assert.equal(plannedBlockParams(model.spec, fullPlan(model.spec)) - plannedBlockParams(model.spec, oneGroupLess), kvGroupParams(model.spec, 0));
    });
  }

  for (const strategy of ['mop', 'depth', 'width'] as const) {
    it(`${strategy} lands within ±0.5 points of the target at 10%, 25% and 45%`, async () => {
      const { model, calibration } = await bundled();
      const dense = parameterCounts(model.spec);
      for (const target of [0.1, 0.25, 0.45]) {
        const { model: pruned, report } = await runMop(model, { target, strategy, calibration, threads: 1 });
        const p = parameterCounts(pruned.spec);
        const ratio = 1 - p.blocks / dense.blocks;
        assert.ok(Math.abs(ratio - target) <= TARGET_TOLERANCE, `${strategy} at ${target}: ratio ${ratio}`);
        assert.equal(report.result.ratio, ratio);
        assert.equal(report.result.params.blocks, p.blocks);
        assert.equal(p.embeddings, dense.embeddings, 'embeddings are never pruned');
        if (strategy === 'width') assert.equal(pruned.spec.layers.length, 5, 'width-only keeps every layer');
        if (strategy === 'depth' && target >= 0.25) assert.ok(pruned.spec.layers.length < 5, 'depth-only removes layers');
      }
    });
  }
});
