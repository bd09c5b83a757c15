import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkMemoryFits, estimatePrune, type EstimateRecipe, memoryEstimate } from '../../src/mop/estimate.ts';
import { measureStepTimes } from '../../src/mop/estimate-timing.ts';
import { syntheticPresets, syntheticSpec } from '../../src/runtime/model/synthetic.ts';
import { defaultPruneSettings } from '../../src/service/prune/prune-options.ts';
import { estimateRecipeOf } from '../../src/service/prune/run-prune.ts';
import { runPrune } from '../../src/service/prune/run-prune.ts';
import { bundled } from './helpers.ts';

const GiB = 2 ** 30;
const defaults = { ...defaultPruneSettings(), target: 0.4 };

describe('prune cost estimate', () => {
  it('refuses full fine-tuning of a 1B model in 24 GB with the numbers and the option that fits', () => {
    const spec = syntheticSpec(syntheticPresets['1b']);
    const r = estimateRecipeOf(defaults);
    assert.throws(() => checkMemoryFits(spec, r, 24 * GiB), (e: Error) => {
      assert.equal(e.name, 'MopInputError');
      assert.match(e.message, /needs about \d+\.\d GiB of memory at its peak \(weights and copies .* GiB, training state .* GiB/);
      assert.match(e.message, /24\.0 GiB is available/);
      assert.match(e.message, /--recovery lora/);
      return true;
    });
    // LoRA trains a sliver of the parameters: no gradients or AdamW moments for the frozen weights.
    const full = memoryEstimate(spec, r).peakBytes;
    const lora = memoryEstimate(spec, estimateRecipeOf({ ...defaults, recovery: 'lora' })).peakBytes;
    assert.ok(lora < 0.7 * full, `lora ${lora / GiB} GiB vs full ${full / GiB} GiB`);
    // The bundled model fits anywhere.
    checkMemoryFits(syntheticSpec(syntheticPresets.tiny), r, 1 * GiB);
  });

  it('counts the candidates and the training tokens of the recipe', () => {
    const spec = syntheticSpec(syntheticPresets.tiny);
    const e = estimatePrune(spec, estimateRecipeOf(defaults));
    // 4 layers, 40%, one layer a step: one whole step and a trim (width only) either way MoP goes.
    assert.deepEqual(e.paths.map((p) => [p.path, p.steps, p.candidates]), [['depth-first', 2, 3]]);
    assert.equal(e.steps, 2);
    assert.equal(e.candidates, 3);
    assert.equal(e.trainingTokens, (3 * 25 + defaults.finalRecoverySteps) * 16 * 128);
    assert.equal(e.seconds, undefined, 'no time without measured step times');
    const depth = estimatePrune(spec, estimateRecipeOf({ ...defaults, strategy: 'depth', recovery: 'none' }));
    assert.equal(depth.candidates, 2);
    assert.equal(depth.trainingTokens, 0);
  });

  it('plans both ways MoP can go where they differ: whole layers a step, or narrower layers and more steps', () => {
    // The 100M shape at 25%: three whole layers are exactly the target (MoP took 3 steps, 6 candidates, in
    // docs/estimate-report.md); narrowing instead leaves (11/12)^k, past 25% only after 4 steps.
    const big = estimatePrune(syntheticSpec(syntheticPresets['100m']), { ...estimateRecipeOf(defaults), target: 0.25 });
    assert.deepEqual(big.paths.map((p) => [p.path, p.steps, p.candidates]), [['depth-first', 3, 6], ['width-first', 4, 7]]);
    assert.equal(big.steps, 3.5);
    assert.equal(big.candidates, 6.5);
    // Five layers at 40% (the bundled model): 2 whole steps, or 3 narrowing ones ending in a trim (MoP took 3 and 5 there).
    const five = estimatePrune(syntheticSpec({ ...syntheticPresets.tiny, layers: 5 }), estimateRecipeOf(defaults));
    assert.deepEqual(five.paths.map((p) => [p.path, p.steps, p.candidates]), [['depth-first', 2, 4], ['width-first', 3, 5]]);
    // The baselines take one path, one candidate a step.
    const width = estimatePrune(syntheticSpec({ ...syntheticPresets.tiny, layers: 5 }), estimateRecipeOf({ ...defaults, strategy: 'width' }));
    assert.deepEqual(width.paths.map((p) => [p.path, p.steps, p.candidates]), [['width-first', 3, 3]]);
  });

  it("predicts wall time from step times measured on the model's own shape, more for more training", async () => {
    const { model } = await bundled();
    const small: EstimateRecipe = estimateRecipeOf({ ...defaults, samples: 4, seqLen: 32, recoveryBatch: 2, recoverySeqLen: 32, recoverySteps: 2, finalRecoverySteps: 10 });
    const measured = await measureStepTimes(model, small, { threads: 1 });
    for (const [k, v] of Object.entries(measured)) assert.ok(Number.isFinite(v) && v > 0, `${k} = ${v}`);
    const a = estimatePrune(model.spec, small, measured);
    const b = estimatePrune(model.spec, { ...small, recovery: { ...small.recovery!, finalSteps: 1000 } }, measured);
    assert.ok(a.seconds!.total > 0);
    // 990 more steps on the model at the target (about 60% of its blocks, all its embeddings).
    assert.ok(b.seconds!.final - a.seconds!.final > 990 * measured.trainStepSeconds * 0.6, `${b.seconds!.final} vs ${a.seconds!.final}`);
    assert.equal(b.seconds!.candidates, a.seconds!.candidates);
    // The default recovery text adds tokens sampled from the model: their decode time is in the total.
    assert.equal(small.recovery!.sampledTokens, defaults.recoverySelfTokens);
    assert.equal(a.seconds!.sampling, defaults.recoverySelfTokens * measured.sampleTokenSeconds!);
    const none = estimateRecipeOf({ ...defaults, samples: 4, seqLen: 32, recoveryBatch: 2, recoverySeqLen: 32, recoverySteps: 2, finalRecoverySteps: 10, recoverySelfTokens: 0 });
    assert.equal(none.recovery!.sampledTokens, 0);
    assert.equal(estimatePrune(model.spec, none, measured).seconds!.sampling, 0);
  });

  it('a prune whose recipe cannot fit in the memory limit is refused before anything runs', async () => {
    const { model } = await bundled();
    const t0 = performance.now();
    await assert.rejects(runPrune({ model, recipe: defaults, memoryLimit: 1024 }), { name: 'MopInputError', message: /needs about .* GiB of memory .* and 0\.0 GiB is available/ });
    assert.ok(performance.now() - t0 < 2000, 'refused without calibrating or training');
  });
});
