import type { ModelWeights } from './surgery.ts';
import { buildPruneReport } from './mop-report.ts';
import { type MopOptions, resolveMopOptions } from './mop-options.ts';
import { MopRun } from './mop-run.ts';
import type { PruningPlan } from './pruning-plan.ts';
import type { PruneReport } from './report.ts';

// The options and progress types live with their checks; src/service imports them from here.
export { MAX_TARGET, type MopOptions, type MopProgress, strategies, TARGET_TOLERANCE, validateMopOptions } from './mop-options.ts';

export interface MopResult {
  model: ModelWeights;
  plan: PruningPlan;
  report: PruneReport;
}

/**
 * MoP, Mixture of Pruners (see docs/mop.md of the shared design notes): from the current model,
 * build a depth candidate (least important layer(s)) and a width candidate (least important KV
 * groups and neurons) worth the same parameter budget, score both on the calibration set, keep the
 * better one, repeat until the target ratio; the last steps trim with width alone so the ratio
 * lands within half a neuron of the target. The baselines run the same schedule with one branch:
 * depth-only takes its layer whenever one fits, and falls back to the same width trim only for the
 * remainder no whole layer fits into; width-only never removes layers.
 *
 * Every candidate is a mask over the input model, scored by one ONNX Runtime session that is built
 * once; tensors are cut only for the final model.
 *
 * With recovery (options.recovery), as the paper runs MoP: each candidate is cut, fine-tuned for a
 * few steps and scored as recovered; the winner's weights are written back into the base-shaped
 * weights (plans keep base indices) and the scoring session is rebuilt on them, so the next step's
 * importance scores see the recovered model. After the target, the final model gets a longer run.
 */
export async function runMop(input: ModelWeights, options: MopOptions): Promise<MopResult> {
  const started = performance.now();
  const s = resolveMopOptions(input, options);
  const first = await s.open(input);
  let run: MopRun | undefined;
  try {
    run = new MopRun(s, input, first);
    await run.start();
    while (await run.step());
    const outcome = await run.finish();
    const report = buildPruneReport(s, run.plan, run.steps, outcome, performance.now() - started);
    options.onProgress?.({ step: run.steps.length, totalEstimate: run.steps.length, ratio: outcome.ratio, message: `done: ${(100 * outcome.ratio).toFixed(1)}%`, done: true });
    return { model: outcome.model, plan: run.plan, report };
  } finally {
    await (run?.forward ?? first).release();
    await s.sharedTeacher?.release();
  }
}
