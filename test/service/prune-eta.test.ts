import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { estimatePrune, plannedPaths, plannedSchedule, stepTotal } from '../../src/mop/estimate.ts';
import { syntheticPresets, syntheticSpec } from '../../src/runtime/model/synthetic.ts';
import { PruneEta } from '../../src/service/prune/prune-eta.ts';
import { defaultPruneSettings } from '../../src/service/prune/prune-options.ts';
import { estimateRecipeOf } from '../../src/service/prune/run-prune.ts';

const spec = syntheticSpec(syntheticPresets.tiny);
const recipe = estimateRecipeOf({ ...defaultPruneSettings(), target: 0.4 });
const tokensPerStep = 16 * 128;

describe('the prune progress ETA', () => {
  it("extrapolates the estimate's time model with this run's training speed and step overhead", () => {
    let now = 0;
    const eta = new PruneEta(spec, recipe, () => now);
    const base = { step: 0, totalEstimate: 3, ratio: 0, message: '' };
    assert.equal(eta.annotate(base).etaSeconds, undefined, 'nothing to go on before a training step');
    // A candidate's training at 0.1 s per step (of the input model's size).
    now = 1000;
    const training = { ...base, recovery: { phase: 'candidate' as const, step: 1, steps: 25, loss: 3, tokensPerSecond: tokensPerStep / 0.1, etaSeconds: 2.4 } };
    const first = eta.annotate(training).etaSeconds!;
    const measured = { trainStepSeconds: 0.1, recoveryStartSeconds: 0, scoringPassSeconds: 0, tapsPassSeconds: 0, scoringOpenSeconds: 0 };
    const plan = estimatePrune(spec, recipe, measured).seconds!;
    // All the planned training left, less the second already spent in this step.
    assert.ok(Math.abs(first - (plan.total - 1)) < 1e-6, `${first} vs ${plan.total - 1}`);
    // Step 1 ends after 20 s, more than its planned time: each remaining step gets that overhead.
    now = 20_000;
    const after = eta.annotate({ ...base, step: 1 }).etaSeconds!;
    const steps = plannedSchedule(spec, recipe, measured).steps.map(stepTotal);
    const overhead = 20 - steps[0]!;
    assert.ok(steps.length >= 2);
    assert.ok(Math.abs(after - (plan.total - steps[0]! + (steps.length - 1) * overhead)) < 1e-6, `${after}`);
    now = 21_000;
    assert.ok(eta.annotate({ ...base, step: 1 }).etaSeconds! < after, 'time passing brings it down');
    // The last progress of the prune says it is done: nothing left, whichever path it took.
    assert.equal(eta.annotate({ ...base, step: 2, totalEstimate: 2, done: true }).etaSeconds, 0);
    // The final recovery has its own ETA.
    assert.equal(eta.annotate({ ...base, step: 3, recovery: { ...training.recovery, phase: 'final', etaSeconds: 7 } }).etaSeconds, 7);
  });

  it('follows the longer path once the run has outgrown the shorter one (MoP narrowed instead of dropping layers)', () => {
    // Five layers at 40%: two whole-layer steps, or three narrowing ones.
    const five = syntheticSpec({ ...syntheticPresets.tiny, layers: 5 });
    let now = 0;
    const eta = new PruneEta(five, recipe, () => now);
    const base = { step: 0, totalEstimate: 3, ratio: 0, message: '' };
    const recovery = { phase: 'candidate' as const, step: 1, steps: 25, loss: 3, tokensPerSecond: tokensPerStep / 0.1, etaSeconds: 2.4 };
    eta.annotate({ ...base, recovery });
    const measured = { trainStepSeconds: 0.1, recoveryStartSeconds: 0, scoringPassSeconds: 0, tapsPassSeconds: 0, scoringOpenSeconds: 0 };
    const [depthFirst, widthFirst] = plannedPaths(five, recipe);
    assert.deepEqual([depthFirst!.steps, widthFirst!.steps], [2, 3]);
    const width = plannedSchedule(five, recipe, measured, widthFirst);
    // Two steps done, each exactly as planned on the width-first path: its third step and the final recovery remain.
    now = 1000 * (stepTotal(width.steps[0]!) + stepTotal(width.steps[1]!));
    const left = eta.annotate({ ...base, step: 2, ratio: 0.3 }).etaSeconds!;
    assert.ok(Math.abs(left - (stepTotal(width.steps[2]!) + width.final)) < 1e-6, `${left} vs ${stepTotal(width.steps[2]!) + width.final}`);
  });
});
