import type { DeviceName } from '../runtime/device/device.ts';
import type { MaskedForward } from '../runtime/engine/masked-forward.ts';
import { openMaskedForward } from '../runtime/engine/ort-masked-forward.ts';
import { Xoshiro128ss } from '../runtime/engine/rng.ts';
import { toBatches } from '../runtime/engine/token-batch.ts';
import { type ModelSpec, parameterCounts } from '../runtime/model/spec.ts';
import type { CalibrationSet } from './calibration.ts';
import { type Candidate, depthCandidate, type DepthUnit, smallestUnitParams, widthCandidate, type WidthPolicy } from './candidates.ts';
import { type DepthRule, depthRules, thirdToLastScores } from './depth-rule.ts';
import { MopInputError } from './errors.ts';
import { ampImportance, type ImportanceCriterion, importanceCriteria } from './importance.ts';
import { fullPlan, plannedBlockParams, type PruningPlan, survivingLayers } from './pruning-plan.ts';
import { type LatencyProfile, predictedStepUs } from './latency-profile.ts';
import { latencyCost, paramCost, plannedCost, type PruneCost } from './prune-cost.ts';
import { budgetTrains, type MopRecoveryOptions, type RecoveryProgress, recoveryBudget, type RecoveryRunRecord, runRecovery } from './mop-recovery.ts';
import type { CandidateRecord, PruneRecoveryReport, PruneReport, StepRecord, Strategy } from './report.ts';
import { CandidateScorer, isSelectionCriterion, type SelectionCriterion, selectionCriteria } from './selection.ts';
import { applyPlan, type ModelWeights, scatterPlan } from './surgery.ts';
import { defaultRecoveryOptions } from '../runtime/train/recover.ts';
import { SharedTeacher } from '../runtime/train/shared-teacher.ts';

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
export const strategies = ['mop', 'depth', 'width'] as const satisfies readonly Strategy[];

export interface MopOptions {
  /** Fraction of the reference block parameters to remove, in (0, 0.9]. */
  target: number;
  strategy?: Strategy;
  criterion?: SelectionCriterion;
  /** Importance scores for both branches (default AMP width, block-influence depth). */
  importance?: ImportanceCriterion | string;
  calibration: CalibrationSet;
  /** Seed the calibration set was drawn with (recorded in the report). */
  seed?: number;
  /**
   * Step budget in units of one average remaining layer (default 1). Smaller steps let MoP
   * interleave the branches: the candidates are still compared at the depth candidate's size, but
   * a winning width branch commits only a step's worth of its least important structures.
   */
  stepLayers?: number;
  /** Depth granularity: whole layers (default) or single attention / MLP sub-blocks. */
  depthUnit?: DepthUnit;
  /** How the depth branch ranks layers (default: block-influence score). */
  depthRule?: DepthRule;
  /** Recovery fine-tuning per candidate and after the target (default: none). */
  recovery?: MopRecoveryOptions;
  widthSplit?: WidthPolicy['split'];
  widthNormalize?: WidthPolicy['normalize'];
  /** A pruned layer keeps a multiple of this many MLP neurons (default 1). */
  widthMultiple?: number;
  /**
   * Latency-aware pruning: the target, the step budgets and every cost are in decode-step time
   * predicted by this profile of the serving engine (measureLatencyProfile), not in parameters.
   * The target is then a share of the blocks' step time, measured against the input model.
   */
  latencyProfile?: LatencyProfile;
  /**
   * Block parameters the ratio is measured against: the dense model's when the input was already
   * pruned (its report.json says), by default the input's own.
   */
  referenceBlocks?: number;
  /** Where the input model came from (for the report). */
  modelPath?: string;
  threads?: number;
  /** Device of the calibration passes (always float32); default cpu. */
  device?: DeviceName;
  onProgress?: (p: MopProgress) => void;
  signal?: AbortSignal;
}

export interface MopProgress {
  /** Steps done. */
  step: number;
  /** Steps done plus an estimate of the steps left. */
  totalEstimate: number;
  ratio: number;
  message: string;
  /** While a recovery fine-tuning runs: its step, loss, tokens/s and ETA. */
  recovery?: RecoveryProgress;
}

export interface MopResult {
  model: ModelWeights;
  plan: PruningPlan;
  report: PruneReport;
}

/** The ratio must land within this of the target (fraction, i.e. ±0.5 percentage points). */
export const TARGET_TOLERANCE = 0.005;
export const MAX_TARGET = 0.9;

/** Checks that need no model: a MopInputError naming the bad value and what is accepted. */
export function validateMopOptions(o: Pick<MopOptions, 'target' | 'strategy' | 'criterion' | 'importance' | 'stepLayers' | 'widthSplit' | 'widthNormalize' | 'widthMultiple' | 'depthUnit' | 'depthRule'>): void {
  if (typeof o.target !== 'number' || !Number.isFinite(o.target) || o.target <= 0 || o.target > MAX_TARGET) {
    throw new MopInputError(`target must be a fraction in (0, ${MAX_TARGET}], got ${String(o.target)}`);
  }
  if (o.strategy !== undefined && !(strategies as readonly string[]).includes(o.strategy)) {
    throw new MopInputError(`unknown strategy '${o.strategy}'; choose one of: ${strategies.join(', ')}`);
  }
  if (o.criterion !== undefined && !isSelectionCriterion(o.criterion)) {
    throw new MopInputError(`unknown criterion '${o.criterion}'; choose one of: ${selectionCriteria.join(', ')}`);
  }
  if (typeof o.importance === 'string' && !importanceCriteria[o.importance]) {
    throw new MopInputError(`unknown importance '${o.importance}'; choose one of: ${Object.keys(importanceCriteria).join(', ')}`);
  }
  if (o.stepLayers !== undefined && !(Number.isFinite(o.stepLayers) && o.stepLayers > 0 && o.stepLayers <= 8)) {
    throw new MopInputError(`step budget must be in (0, 8] layers, got ${o.stepLayers}`);
  }
  if (o.widthSplit !== undefined && o.widthSplit !== 'param-share' && o.widthSplit !== 'global') {
    throw new MopInputError(`unknown width split '${String(o.widthSplit)}'; choose param-share or global`);
  }
  if (o.depthUnit !== undefined && o.depthUnit !== 'layer' && o.depthUnit !== 'sublayer') {
    throw new MopInputError(`unknown depth unit '${String(o.depthUnit)}'; choose layer or sublayer`);
  }
  if (o.depthRule !== undefined && !(depthRules as readonly string[]).includes(o.depthRule)) {
    throw new MopInputError(`unknown depth rule '${String(o.depthRule)}'; choose one of: ${depthRules.join(', ')}`);
  }
  if (o.widthMultiple !== undefined && !(Number.isInteger(o.widthMultiple) && o.widthMultiple >= 1 && o.widthMultiple <= 1024)) {
    throw new MopInputError(`width multiple must be an integer in [1, 1024], got ${o.widthMultiple}`);
  }
  if (o.widthNormalize !== undefined && o.widthNormalize !== 'layer' && o.widthNormalize !== 'none') {
    throw new MopInputError(`unknown width normalisation '${String(o.widthNormalize)}'; choose layer or none`);
  }
}

/** Checks that the model can be pruned as asked (before any forward pass). */
function validateModel(spec: ModelSpec, strategy: Strategy, target: number, referenceBlocks: number): void {
  const blocks = parameterCounts(spec).blocks;
  const alive = spec.layers.filter((l) => l.heads > 0 || l.ffn > 0).length;
  if (blocks === 0) throw new MopInputError('the model has no transformer-block parameters to prune');
  if (strategy !== 'width' && alive < 2) {
    throw new MopInputError(`the model has ${alive} layer; ${strategy === 'mop' ? 'MoP' : 'depth pruning'} needs at least 2 (use --strategy width)`);
  }
  const ratio = 1 - blocks / referenceBlocks;
  if (ratio >= target - TARGET_TOLERANCE) {
    throw new MopInputError(`the model is already at ${(100 * ratio).toFixed(1)}% compression, target ${(100 * target).toFixed(1)}%: nothing to prune`);
  }
}

export async function runMop(input: ModelWeights, options: MopOptions): Promise<MopResult> {
  validateMopOptions(options);
  const started = performance.now();
  const strategy = options.strategy ?? 'mop';
  const criterion = options.criterion ?? 'ppl';
  const importance = typeof options.importance === 'string' ? importanceCriteria[options.importance]! : (options.importance ?? ampImportance);
  const stepLayers = options.stepLayers ?? 1;
  const depthUnit = options.depthUnit ?? 'layer';
  const depthRule = options.depthRule ?? 'score';
  // Distillation: one teacher session and log-probability cache for every recovery of this prune.
  const sharedTeacher = options.recovery?.data.teacher && { ...defaultRecoveryOptions, ...options.recovery.recipe }.loss === 'kd' ? new SharedTeacher(options.recovery.data.teacher) : undefined;
  const recovery = options.recovery && sharedTeacher ? { ...options.recovery, data: { ...options.recovery.data, sharedTeacher } } : options.recovery;
  const candidateRecovery = recovery !== undefined && budgetTrains(recoveryBudget(recovery, 'candidate'));
  // The 'random' criterion's coin: seeded, so a run repeats.
  const coin = new Xoshiro128ss((options.seed ?? options.calibration.description.seed) ^ 0x5eed);
  const widthMultiple = options.widthMultiple ?? 1;
  const policy: WidthPolicy = { split: options.widthSplit ?? 'param-share', normalize: options.widthNormalize ?? 'layer', multiple: widthMultiple };
  const base = input.spec;
  const inputParams = parameterCounts(base);
  const referenceParams = options.referenceBlocks ?? inputParams.blocks;
  validateModel(base, strategy, options.target, referenceParams);
  // Every budget below is in the cost's unit: block parameters, or predicted step time (µs).
  const profile = options.latencyProfile;
  const cost: PruneCost = profile ? latencyCost(profile.coefficients) : paramCost;
  const costOf = (plan: PruningPlan) => plannedCost(base, plan, cost);
  const reference = profile ? costOf(fullPlan(base)) : referenceParams;
  const { calibration, signal } = options;
  if (calibration.seqLen > base.maxContext) {
    throw new MopInputError(`calibration sequences of ${calibration.seqLen} tokens exceed the model's context of ${base.maxContext}`);
  }
  const vocabTooSmall = calibration.sequences.some((s) => s.some((t) => t >= base.vocabSize));
  if (vocabTooSmall) throw new MopInputError(`calibration tokens fall outside the model's vocabulary of ${base.vocabSize}`);

  const targetBlocks = Math.round((1 - options.target) * reference);
  const ratioOf = (blocks: number) => 1 - blocks / reference;
  const paramRatioOf = (plan: PruningPlan) => 1 - plannedBlockParams(base, plan) / referenceParams;
  const open = (m: ModelWeights) =>
    openMaskedForward(m.spec, m.weights, {
      maxSeqLen: calibration.seqLen,
      ...(options.threads !== undefined && { threads: options.threads }),
      ...(options.device && { device: options.device }),
    });
  // The current model's weights in base shape: the input's, or the recovered ones.
  let current: ModelWeights = input;
  let forward: MaskedForward = await open(input);
  let candidateSeconds = 0;
  const recoveryHooks = (phase: RecoveryProgress['phase'], branch: RecoveryProgress['branch'], base: Omit<MopProgress, 'recovery'>) => ({
    signal,
    onProgress: (t: { step: number; steps: number; loss: number; tokensPerSecond: number; etaSeconds: number }) =>
      options.onProgress?.({
        ...base,
        message: `${base.message}: recovery ${t.step}/${t.steps}, loss ${t.loss.toFixed(3)}, ${Math.round(t.tokensPerSecond)} tok/s, ETA ${Math.round(t.etaSeconds)} s`,
        recovery: { phase, ...(branch && { branch }), step: t.step, steps: t.steps, loss: t.loss, tokensPerSecond: t.tokensPerSecond, etaSeconds: t.etaSeconds },
      }),
  });
  try {
    const scorer = new CandidateScorer(forward, toBatches(calibration.sequences), criterion);
    let plan = fullPlan(base);
    signal?.throwIfAborted();
    await scorer.init(plan);
    const steps: StepRecord[] = [];
    const progressOf = (message: string, remaining: number, stepBudget: number): MopProgress => ({
      step: steps.length,
      totalEstimate: steps.length + Math.max(0, Math.ceil((remaining - smallestUnitParams(base, plan, cost, widthMultiple) / 2) / Math.max(stepBudget, 1))),
      ratio: paramRatioOf(plan),
      message,
    });
    const progress = (message: string, remaining: number, stepBudget: number) => options.onProgress?.(progressOf(message, remaining, stepBudget));

    for (;;) {
      const blocks = costOf(plan);
      const remaining = blocks - targetBlocks;
      const unit = smallestUnitParams(base, plan, cost, widthMultiple);
      // Done once no structure left would bring the count closer to the target.
      if (remaining <= unit / 2) break;
      const alive = survivingLayers(plan).length;
      const budget = Math.min((stepLayers * blocks) / alive, remaining);
      const t0 = performance.now();
      progress(`step ${steps.length + 1}: scoring the current model (${(100 * ratioOf(blocks)).toFixed(1)}%)`, remaining, budget);

      const parent = await scorer.parent(plan, signal);
      const inputs = { spec: base, weights: current.weights, taps: parent.taps };
      const kvScores = importance.kvGroupScores(inputs);
      const neuronScores = importance.neuronScores(inputs);
      const depth =
        strategy === 'width'
          ? null
          : depthCandidate(
              base,
              plan,
              depthRule === 'third-to-last' ? thirdToLastScores(plan) : { layer: importance.layerScores(inputs), ...importance.subBlockScores(inputs) },
              budget,
              remaining + unit / 2,
              depthUnit,
              cost,
            );
      // The width candidate removes what the depth candidate removes, so the two compare at
      // equal size; without a depth candidate it removes the step budget.
      const compareBudget = depth ? depth.removedParams : budget;
      const width = strategy === 'depth' && depth ? null : widthCandidate(base, plan, kvScores, neuronScores, compareBudget, policy, cost);
      const candidates = [depth, width].filter((c): c is Candidate => c !== null);
      if (candidates.length === 0) break;

      const records: CandidateRecord[] = [];
      const recovered: ModelWeights[] = [];
      for (const c of candidates) {
        progress(`step ${steps.length + 1}: scoring the ${c.branch} candidate`, remaining, budget);
        let score = await scorer.candidate(c.plan, signal);
        let recoveryRecord: (RecoveryRunRecord & { scoreBefore: number }) | undefined;
        if (candidateRecovery) {
          const what = `step ${steps.length + 1}: ${c.branch} candidate`;
          const run = await runRecovery(applyPlan(current, c.plan), recovery, recoveryBudget(recovery, 'candidate'), recoveryHooks('candidate', c.branch, progressOf(what, remaining, budget)));
          candidateSeconds += run.record.wallSeconds;
          recovered.push(run.model);
          const f = await open(run.model);
          try {
            recoveryRecord = { scoreBefore: score, ...run.record };
            score = await scorer.other(f, fullPlan(run.model.spec), signal);
          } finally {
            await f.release();
          }
        }
        const after = blocks - c.removedParams;
        const costPer1kParams = ((score - parent.score) / c.removedParams) * 1000;
        records.push({ branch: c.branch, removedParams: c.removedParams, blocks: after, ratio: ratioOf(after), score, costPer1kParams, removed: c.removed, ...(recoveryRecord && { recovery: recoveryRecord }) });
      }
      // The candidate that loses least per removed parameter wins: at equal size simply the lower
      // score (sizes differ by rounding only). A tie goes to depth, which also saves per-token work.
      // 'random' flips the seeded coin instead.
      const best = criterion === 'random' ? records[Math.floor(coin.nextFloat() * records.length)]! : records.reduce((a, b) => (b.costPer1kParams < a.costPer1kParams ? b : a));
      const winner = records.indexOf(best);
      let chosen = candidates[winner]!;
      if (candidateRecovery) {
        // The next step starts from the recovered winner (a width winner trimmed to the step
        // budget below keeps the few extra structures at their current weights).
        current = { spec: base, weights: scatterPlan(current, chosen.plan, recovered[winner]!) };
        await forward.release();
        forward = await open(current);
        scorer.replaceForward(forward);
      }
      // A step budget under the compared size: a winning width branch commits only its least
      // important step's worth, then the next step compares again.
      if (chosen.branch === 'width' && chosen.removedParams > budget + unit / 2) chosen = widthCandidate(base, plan, kvScores, neuronScores, budget, policy, cost) ?? chosen;
      plan = chosen.plan;
      const after = blocks - chosen.removedParams;
      steps.push({
        step: steps.length + 1,
        budget: Math.round(budget),
        parent: { blocks, ratio: ratioOf(blocks), score: parent.score },
        candidates: records,
        chosen: chosen.branch,
        committedParams: chosen.removedParams,
        blocks: after,
        ratio: ratioOf(after),
        wallMs: performance.now() - t0,
      });
      progress(`step ${steps.length}: took ${chosen.branch} → ${(100 * ratioOf(after)).toFixed(1)}%`, after - targetBlocks, budget);
      if (steps.length > 10_000) throw new Error('MoP did not converge (more than 10000 steps)');
    }

    const budgetRatio = ratioOf(costOf(plan));
    const ratio = paramRatioOf(plan);
    if (Math.abs(budgetRatio - options.target) > TARGET_TOLERANCE) {
      const coarse = widthMultiple > 1 ? `; a smaller --width-multiple than ${widthMultiple} gives finer steps` : '';
      throw new MopInputError(
        `cannot reach ${(100 * options.target).toFixed(1)}% within ±${100 * TARGET_TOLERANCE} points with ${strategy} pruning: stopped at ${(100 * budgetRatio).toFixed(2)}% (the remaining structures are too coarse${coarse})`,
      );
    }
    let finalScore = (await scorer.parent(plan, signal)).score;
    let model = applyPlan(current, plan);
    let recoveryReport: PruneRecoveryReport | undefined;
    let finalScoreBeforeRecovery: number | undefined;
    if (recovery) {
      let final: RecoveryRunRecord | undefined;
      if (budgetTrains(recoveryBudget(recovery, 'final'))) {
        const run = await runRecovery(model, recovery, recoveryBudget(recovery, 'final'), recoveryHooks('final', undefined, { step: steps.length, totalEstimate: steps.length, ratio, message: 'final recovery' }));
        model = run.model;
        final = run.record;
        const f = await open(model);
        try {
          finalScoreBeforeRecovery = finalScore;
          finalScore = await scorer.other(f, fullPlan(model.spec), signal);
        } finally {
          await f.release();
        }
      }
      const { steps: _steps, ...recipe } = { ...defaultRecoveryOptions, ...recovery.recipe };
      recoveryReport = {
        recipe,
        candidateSteps: recovery.candidateSteps,
        finalSteps: recovery.finalSteps,
        ...(recovery.candidateTimeLimit !== undefined && { candidateTimeLimit: recovery.candidateTimeLimit }),
        ...(recovery.finalTimeLimit !== undefined && { finalTimeLimit: recovery.finalTimeLimit }),
        ...(recovery.description && { data: recovery.description }),
        candidateSeconds,
        finalSeconds: final?.wallSeconds ?? 0,
        seconds: candidateSeconds + (final?.wallSeconds ?? 0),
        ...(final && { final }),
      };
    }
    const params = parameterCounts(model.spec);
    const report: PruneReport = {
      version: 1,
      strategy,
      criterion,
      importance: importance.name,
      target: options.target,
      seed: options.seed ?? options.calibration.description.seed,
      options: {
        stepLayers,
        depthUnit,
        widthSplit: policy.split,
        widthNormalize: policy.normalize,
        ...(widthMultiple > 1 && { widthMultiple }),
        ...(depthRule !== 'score' && { depthRule }),
        ...(profile && { budget: 'latency' as const }),
      },
      calibration: options.calibration.description,
      model: { ...(options.modelPath !== undefined && { path: options.modelPath }), layers: base.layers, params: inputParams },
      referenceBlocks: referenceParams,
      steps,
      result: {
        layers: model.spec.layers,
        sourceLayers: survivingLayers(plan),
        kept: plan.layers.map((l, i) => ({ layer: i, kvGroups: l.attention ? indices(l.kvGroups) : [], neurons: l.mlp ? indices(l.neurons) : [] })),
        params,
        ratio,
        steps: { depth: steps.filter((s) => s.chosen === 'depth').length, width: steps.filter((s) => s.chosen === 'width').length },
        finalScore,
        ...(finalScoreBeforeRecovery !== undefined && { finalScoreBeforeRecovery }),
        ...(profile && { latency: { blockRatio: budgetRatio, stepRatio: predictedStepUs(profile, model.spec) / predictedStepUs(profile, base), profile } }),
      },
      ...(recoveryReport && { recovery: recoveryReport }),
      wallMs: performance.now() - started,
    };
    options.onProgress?.({ step: steps.length, totalEstimate: steps.length, ratio, message: `done: ${(100 * ratio).toFixed(1)}%` });
    return { model, plan, report };
  } finally {
    await forward.release();
    await sharedTeacher?.release();
  }
}

function indices(mask: Uint8Array): number[] {
  const out: number[] = [];
  mask.forEach((m, i) => {
    if (m) out.push(i);
  });
  return out;
}
