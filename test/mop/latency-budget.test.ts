import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fitLine, type LatencyProfile, MIN_PER_PARAM_SHARE, measureLatencyProfile, predictedStepUs } from '../../src/mop/latency-profile.ts';
import { runMop } from '../../src/mop/mop.ts';
import { latencyCost, paramCost, plannedCost } from '../../src/mop/prune-cost.ts';
import { fullPlan, plannedBlockParams } from '../../src/mop/pruning-plan.ts';
import { syntheticSpec } from '../../src/runtime/model/synthetic.ts';
import { bundled } from './helpers.ts';

/** A made-up profile (no timing): a large fixed cost per sub-block, as a CPU's per-op overhead has. */
function profileWith(fixedUs: number, usPerParam: number): LatencyProfile {
  return {
    coefficients: { attentionFixedUs: fixedUs, attentionUsPerParam: usPerParam, mlpFixedUs: fixedUs, mlpUsPerParam: usPerParam },
    baseUs: 100,
    measured: { target: 'test', threads: 1, batch: 1, contextTokens: 0, layersPerProbe: 0, probes: [] },
  };
}

describe('latency-aware pruning (--budget latency)', () => {
  it('the latency cost counts a sub-block\'s fixed cost only while the sub-block exists', () => {
    const spec = syntheticSpec({ vocabSize: 32, hidden: 16, layers: 2, heads: 4, kvHeads: 2, ffn: 32 });
    const cost = latencyCost({ attentionFixedUs: 50, attentionUsPerParam: 0.01, mlpFixedUs: 20, mlpUsPerParam: 0.01 });
    const plan = fullPlan(spec);
    const full = plannedCost(spec, plan, cost);
    assert.ok(Math.abs(full - (2 * 70 + 0.01 * plannedBlockParams(spec, plan))) < 1e-9);
    // One neuron less: only its parameters' time.
    plan.layers[0]!.neurons[0] = 0;
    assert.ok(Math.abs(full - plannedCost(spec, plan, cost) - cost.neuron(spec)) < 1e-9);
    // The whole MLP of layer 1 gone: its parameters' time and its fixed cost.
    plan.layers[1]!.mlp = false;
    const mlpParams = 16 + 3 * 32 * 16;
    assert.ok(Math.abs(full - plannedCost(spec, plan, cost) - cost.neuron(spec) - (20 + 0.01 * mlpParams)) < 1e-9);
    assert.equal(plannedCost(spec, fullPlan(spec), paramCost), plannedBlockParams(spec, fullPlan(spec)));
  });

  it('reaches the target share of the blocks\' predicted step time, which is not the parameter share when sub-blocks have fixed costs', async () => {
    const { model, calibration } = await bundled();
    // Fixed costs worth a third to a half of a sub-block of this model, as a CPU's per-op overhead.
    const profile = profileWith(2000, 0.1);
    const latency = await runMop(model, { target: 0.3, calibration, latencyProfile: profile });
    const lat = latency.report.result.latency!;
    assert.equal(latency.report.options.budget, 'latency');
    assert.ok(Math.abs(lat.blockRatio - 0.3) <= 0.005, `block time ratio ${lat.blockRatio}`);
    // Recomputed from the output shape alone: the blocks' time under the profile fell by the target.
    const cost = latencyCost(profile.coefficients);
    const time = (spec: typeof model.spec) => spec.layers.reduce((s, l) => s + cost.subBlocks(spec, l).attention + cost.subBlocks(spec, l).mlp, 0);
    assert.ok(Math.abs(1 - time(latency.model.spec) / time(model.spec) - lat.blockRatio) < 1e-9);
    // ... while the parameter share removed is another number: the budget did not count parameters.
    assert.ok(Math.abs(latency.report.result.ratio - 0.3) > 0.005, `param ratio ${latency.report.result.ratio}`);
    assert.ok(Math.abs(lat.stepRatio - predictedStepUs(profile, latency.model.spec) / predictedStepUs(profile, model.spec)) < 1e-12);
    assert.ok(lat.stepRatio < 1 && lat.stepRatio > 0.5);
    assert.ok(latency.report.steps.every((s) => s.ratio > s.parent.ratio));
  });

  it('width-only pruning lands on the target when sub-blocks have large fixed costs: the unit that empties a sub-block carries its fixed cost', async () => {
    const { model, calibration } = await bundled();
    // Fixed costs of a whole MLP's worth: emptying one sub-block saves as much as all its neurons.
    for (const widthMultiple of [1, 4]) {
      const { report } = await runMop(model, { target: 0.3, calibration, strategy: 'width', widthMultiple, latencyProfile: profileWith(3300, 0.1) });
      assert.ok(Math.abs(report.result.latency!.blockRatio - 0.3) <= 0.005, `×${widthMultiple}: ${report.result.latency!.blockRatio}`);
      for (const s of report.steps) assert.ok(s.committedParams <= s.budget * 1.05 + 3300 * 0.01, `×${widthMultiple} step ${s.step}: ${s.committedParams} > budget ${s.budget}`);
    }
  });

  it('the step that finishes lands on the target where the only units crossing it are coarse: it swaps them for finer ones', async () => {
    const { model, calibration } = await bundled();
    // Profiles where the greedy fill alone stopped at 31.41% and 30.74% (a KV group that empties
    // an attention sub-block, with its fixed cost, was the unit that crossed the target).
    const profiles = [
      { attentionFixedUs: 3825.4, attentionUsPerParam: 0.0876, mlpFixedUs: 770.9, mlpUsPerParam: 0.0455 },
      { attentionFixedUs: 2091.0, attentionUsPerParam: 0.3032, mlpFixedUs: 2152.6, mlpUsPerParam: 0.0268 },
    ];
    for (const coefficients of profiles) {
      const profile: LatencyProfile = { ...profileWith(0, 0), coefficients };
      const { report } = await runMop(model, { target: 0.3, calibration, strategy: 'width', widthMultiple: 4, latencyProfile: profile });
      assert.ok(Math.abs(report.result.latency!.blockRatio - 0.3) <= 0.005, `${JSON.stringify(coefficients)}: ${report.result.latency!.blockRatio}`);
      for (const l of report.result.layers) assert.ok(l.ffn === 0 || l.ffn === model.spec.layers[0]!.ffn || l.ffn % 4 === 0, `an MLP of ${l.ffn}`);
    }
  });

  it('a noisy fit is clamped: never a negative fixed cost, never a slope below its share, proportional when there is no signal', () => {
    const clean = fitLine(1000, 300, 250, 150); // 100 µs fixed + 0.2 µs per parameter
    assert.ok(Math.abs(clean.fixed - 100) < 1e-9 && Math.abs(clean.perParam - 0.2) < 1e-12);
    const flat = fitLine(1000, 300, 250, 310); // the smaller probe measured slower
    assert.ok(Math.abs(flat.perParam - (MIN_PER_PARAM_SHARE * 300) / 1000) < 1e-12);
    assert.ok(Math.abs(flat.fixed + flat.perParam * 1000 - 300) < 1e-9);
    const steep = fitLine(1000, 300, 250, 10); // would need a negative fixed cost
    assert.equal(steep.fixed, 0);
    assert.ok(Math.abs(steep.perParam - 0.3) < 1e-12);
    const none = fitLine(1000, -5, 250, -7); // the full probe no slower than the empty one
    assert.equal(none.fixed, 0);
    assert.ok(none.perParam > 0);
  });

  it('the engine profile of a small shape has positive per-parameter costs and a base cost', async () => {
    const spec = syntheticSpec({ vocabSize: 256, hidden: 64, layers: 4, heads: 4, kvHeads: 2, ffn: 160, maxContext: 256 });
    const p = await measureLatencyProfile(spec, { threads: 1, steps: 8 });
    assert.deepEqual(p.measured.probes.map((x) => x.name), ['head', 'small-head', 'attention-full', 'attention-quarter', 'mlp-full', 'mlp-quarter']);
    assert.ok(p.baseUs > 0);
    for (const [k, v] of Object.entries(p.coefficients)) assert.ok(Number.isFinite(v) && v >= 0, `${k} = ${v}`);
    assert.ok(p.coefficients.attentionUsPerParam > 0 || p.coefficients.attentionFixedUs > 0);
    assert.ok(p.coefficients.mlpUsPerParam > 0 || p.coefficients.mlpFixedUs > 0);
    assert.ok(predictedStepUs(p, spec) > p.baseUs);
  });
});
