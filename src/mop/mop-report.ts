import { parameterCounts } from '../runtime/model/spec.ts';
import { predictedStepUs } from './latency-profile.ts';
import type { MopSettings } from './mop-options.ts';
import type { MopOutcome } from './mop-run.ts';
import type { PruningPlan } from './pruning-plan.ts';
import { survivingLayers } from './pruning-plan.ts';
import type { PruneReport, StepRecord } from './report.ts';

/** The report.json of a finished run (report.ts describes its fields). */
export function buildPruneReport(s: MopSettings, plan: PruningPlan, steps: StepRecord[], outcome: MopOutcome, wallMs: number): PruneReport {
  const { options, profile, policy } = s;
  const { model, finalScore, finalScoreBeforeRecovery } = outcome;
  return {
    version: 1,
    strategy: s.strategy,
    criterion: s.criterion,
    importance: s.importance.name,
    target: options.target,
    seed: options.seed ?? options.calibration.description.seed,
    options: {
      stepLayers: s.stepLayers,
      depthUnit: s.depthUnit,
      widthSplit: policy.split,
      widthNormalize: policy.normalize,
      ...(s.widthMultiple > 1 && { widthMultiple: s.widthMultiple }),
      ...(policy.uniform && { uniform: true as const }),
      ...(s.depthRule !== 'score' && { depthRule: s.depthRule }),
      ...(profile && { budget: 'latency' as const }),
    },
    calibration: options.calibration.description,
    model: { ...(options.modelPath !== undefined && { path: options.modelPath }), layers: s.base.layers, params: s.inputParams },
    referenceBlocks: s.referenceParams,
    steps,
    result: {
      layers: model.spec.layers,
      sourceLayers: survivingLayers(plan),
      kept: plan.layers.map((l, i) => ({ layer: i, kvGroups: l.attention ? indices(l.kvGroups) : [], neurons: l.mlp ? indices(l.neurons) : [] })),
      params: parameterCounts(model.spec),
      ratio: outcome.ratio,
      steps: { depth: steps.filter((x) => x.chosen === 'depth').length, width: steps.filter((x) => x.chosen === 'width').length },
      finalScore,
      ...(finalScoreBeforeRecovery !== undefined && { finalScoreBeforeRecovery }),
      ...(profile && { latency: { blockRatio: outcome.budgetRatio, stepRatio: predictedStepUs(profile, model.spec) / predictedStepUs(profile, s.base), profile } }),
    },
    ...(outcome.recovery && { recovery: outcome.recovery }),
    wallMs,
  };
}

function indices(mask: Uint8Array): number[] {
  const out: number[] = [];
  mask.forEach((m, i) => {
    if (m) out.push(i);
  });
  return out;
}
