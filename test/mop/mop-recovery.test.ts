import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { thirdToLastScores } from '../../src/mop/depth-rule.ts';
import { ampImportance, type ImportanceCriterion } from '../../src/mop/importance.ts';
import { type MopProgress, runMop } from '../../src/mop/mop.ts';
import type { MopRecoveryOptions } from '../../src/mop/mop-recovery.ts';
import { fullPlan } from '../../src/mop/pruning-plan.ts';
import { recoveryWindows } from '../../src/mop/recovery-data.ts';
import { applyPlan, scatterPlan, withLayerRemoved } from '../../src/mop/surgery.ts';
import { defaultCalibrationPath } from '../../src/mop/calibration.ts';
import { readFileSync } from 'node:fs';
import { bundled } from './helpers.ts';

/** A tiny recovery budget (a handful of 2 × 32 steps) so the loop runs in seconds. */
async function tinyRecovery(overrides: Partial<MopRecoveryOptions> = {}): Promise<MopRecoveryOptions> {
  const { model, tokenizer } = await bundled();
  const windows = recoveryWindows(tokenizer, readFileSync(defaultCalibrationPath(), 'utf8').slice(0, 20_000), 32);
  return {
    recipe: { kind: 'full', loss: 'kd', kdAlpha: 0.75, lr: 2e-3, batch: 2, seqLen: 32, threads: 1 },
    candidateSteps: 3,
    finalSteps: 4,
    data: { windows, teacher: { spec: model.spec, weights: model.weights } },
    ...overrides,
  };
}

describe('MoP with recovery fine-tuning', () => {
  it('recovers every candidate before scoring it, records its score and loss before and after, then runs the final recovery', async () => {
    const { model, calibration } = await bundled();
    const progress: MopProgress[] = [];
    const { model: pruned, report } = await runMop(model, { target: 0.4, calibration, seed: 1, threads: 1, recovery: await tinyRecovery(), onProgress: (p) => progress.push(p) });
    assert.ok(report.steps.length >= 1);
    for (const s of report.steps) {
      assert.deepEqual(s.candidates.map((c) => c.branch), ['depth', 'width']);
      for (const c of s.candidates) {
        const r = c.recovery!;
        assert.ok(r, 'every candidate has a recovery record');
        assert.equal(r.steps, 3);
        assert.equal(r.updates, 3);
        assert.ok(Number.isFinite(r.scoreBefore) && Number.isFinite(c.score) && r.scoreBefore !== c.score, 'scored before and after recovery');
        assert.ok(Number.isFinite(r.trainLossFirst) && Number.isFinite(r.trainLossLast) && r.seconds > 0 && r.tokensPerSecond > 0);
      }
    }
    const rec = report.recovery!;
    assert.equal(rec.candidateSteps, 3);
    assert.equal(rec.finalSteps, 4);
    assert.equal(rec.final!.updates, 4);
    assert.equal(rec.recipe.kind, 'full');
    assert.equal(rec.recipe.loss, 'kd');
    assert.ok(Math.abs(rec.seconds - rec.candidateSeconds - rec.finalSeconds) < 1e-9 && rec.finalSeconds > 0 && rec.candidateSeconds > 0);
    assert.ok(report.result.finalScoreBeforeRecovery !== undefined && report.result.finalScoreBeforeRecovery !== report.result.finalScore);
    assert.deepEqual(pruned.spec.layers, report.result.layers, 'recovery keeps the pruned shape');
    assert.ok(Math.abs(report.result.ratio - 0.4) <= 0.005);
    // Progress carries the training step, loss, tokens/s and ETA of both phases.
    const candidate = progress.filter((p) => p.recovery?.phase === 'candidate');
    const final = progress.filter((p) => p.recovery?.phase === 'final');
    assert.ok(candidate.some((p) => p.recovery!.branch === 'depth') && candidate.some((p) => p.recovery!.branch === 'width'));
    assert.deepEqual(final.map((p) => p.recovery!.step), [1, 2, 3, 4]);
    for (const p of [...candidate, ...final]) assert.ok(Number.isFinite(p.recovery!.loss) && p.recovery!.tokensPerSecond > 0 && p.recovery!.etaSeconds >= 0);
  });

  it('time budgets: each candidate and the final run train for their seconds, and the report records the limits', async () => {
    const { model, calibration } = await bundled();
    const recovery = await tinyRecovery({ candidateSteps: 0, finalSteps: 0, candidateTimeLimit: 0.3, finalTimeLimit: 1 });
    const { report } = await runMop(model, { target: 0.2, calibration, recovery });
    const rec = report.recovery!;
    assert.equal(rec.candidateTimeLimit, 0.3);
    assert.equal(rec.finalTimeLimit, 1);
    const runs = report.steps.flatMap((s) => s.candidates.map((c) => c.recovery!));
    assert.ok(runs.length > 0 && runs.every((r) => r.steps >= 1 && r.seconds <= 0.3 + 2 * (r.seconds / r.steps) + 0.05), JSON.stringify(runs.map((r) => [r.steps, r.seconds])));
    assert.ok(rec.final!.steps > runs[0]!.steps, `final ${rec.final!.steps} steps vs a candidate's ${runs[0]!.steps}`);
    assert.ok(rec.final!.seconds <= 1 + 2 * (rec.final!.seconds / rec.final!.steps) + 0.05, `${rec.final!.seconds} s`);
  });

  it('recovery changes the result: the final model differs from the same prune without recovery', async () => {
    const { model, calibration } = await bundled();
    const plain = await runMop(model, { target: 0.2, strategy: 'depth', calibration, seed: 1, threads: 1 });
    const recovered = await runMop(model, { target: 0.2, strategy: 'depth', calibration, seed: 1, threads: 1, recovery: await tinyRecovery({ candidateSteps: 0 }) });
    assert.deepEqual(recovered.model.spec.layers, plain.model.spec.layers);
    assert.equal(recovered.report.recovery!.candidateSeconds, 0, 'no per-candidate recovery at 0 steps');
    assert.equal(recovered.report.steps[0]!.candidates[0]!.recovery, undefined);
    const name = 'model.layers.0.mlp.down_proj.weight';
    assert.notDeepEqual(recovered.model.weights.get(name)!.data, plain.model.weights.get(name)!.data);
  });

  it('cancel during a candidate recovery stops the prune with an AbortError', async () => {
    const { model, calibration } = await bundled();
    const ac = new AbortController();
    const t0 = performance.now();
    await assert.rejects(
      runMop(model, {
        target: 0.4,
        calibration,
        seed: 1,
        threads: 1,
        recovery: await tinyRecovery({ candidateSteps: 1000 }),
        signal: ac.signal,
        onProgress: (p) => {
          if (p.recovery?.step === 2) ac.abort();
        },
      }),
      { name: 'AbortError' },
    );
    assert.ok(performance.now() - t0 < 30_000);
  });

  it("criterion random picks with a seeded coin: the same seed takes the same path", async () => {
    const { model, calibration } = await bundled();
    const paths = await Promise.all(
      [1, 1].map(async (seed) => (await runMop(model, { target: 0.5, calibration, seed, threads: 1, criterion: 'random', stepLayers: 0.5 })).report.steps.map((s) => s.chosen).join('')),
    );
    assert.equal(paths[0], paths[1]);
    const r = await runMop(model, { target: 0.5, calibration, seed: 1, threads: 1, criterion: 'random', stepLayers: 0.5 });
    assert.equal(r.report.criterion, 'random');
    for (const s of r.report.steps) for (const c of s.candidates) assert.ok(c.score > 1, 'candidates are still scored (perplexity)');
  });

  it("depth rule third-to-last removes the third-to-last surviving layer first, whatever the scores", async () => {
    const { model, calibration } = await bundled();
    const scores = thirdToLastScores(fullPlan(model.spec));
    assert.equal(scores.layer.indexOf(Math.min(...scores.layer)), model.spec.layers.length - 3);
    // Scores that make layer 0 the least important: the score rule takes it, the positional rule does not.
    const layer0First: ImportanceCriterion = { ...ampImportance, layerScores: (x) => Float64Array.from(x.spec.layers, (_, i) => i) };
    const run = (depthRule: 'score' | 'third-to-last') => runMop(model, { target: 0.2, strategy: 'depth', depthRule, importance: layer0First, calibration, seed: 1, threads: 1 });
    assert.deepEqual((await run('score')).report.steps[0]!.candidates[0]!.removed.layers, [0]);
    const { report } = await run('third-to-last');
    assert.deepEqual(report.steps[0]!.candidates[0]!.removed.layers, [model.spec.layers.length - 3]);
    assert.equal(report.options.depthRule, 'third-to-last');
    // After that layer is gone the next third-to-last is the next one up.
    const next = thirdToLastScores(withLayerRemoved(fullPlan(model.spec), model.spec.layers.length - 3));
    assert.equal(next.layer.indexOf(Math.min(...next.layer)), model.spec.layers.length - 4);
  });

  it('scatterPlan writes a cut model back into base positions: cutting again gives the cut weights', async () => {
    const { model } = await bundled();
    const plan = withLayerRemoved(fullPlan(model.spec), 2);
    plan.layers[0]!.kvGroups[1] = 0;
    plan.layers[3]!.neurons.fill(0, 0, 40);
    const cut = applyPlan(model, plan);
    // "Train" the cut model: every weight changes.
    const trained = { spec: cut.spec, weights: new Map([...cut.weights].map(([n, t]) => [n, { shape: t.shape, data: t.data.map((x, i) => x + 0.001 * ((i % 7) - 3)) }])) };
    const back = scatterPlan(model, plan, trained);
    const again = applyPlan({ spec: model.spec, weights: back }, plan);
    for (const [name, t] of trained.weights) assert.deepEqual(again.weights.get(name)!.data, t.data, name);
    // What the plan drops keeps the base values; the input is not modified.
    assert.deepEqual(back.get('model.layers.2.mlp.up_proj.weight')!.data, model.weights.get('model.layers.2.mlp.up_proj.weight')!.data);
    assert.notDeepEqual(back.get('model.layers.0.self_attn.q_proj.weight')!.data, model.weights.get('model.layers.0.self_attn.q_proj.weight')!.data);
  });
});
