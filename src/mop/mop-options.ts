import type { DeviceName } from '../runtime/device/device.ts';
import type { MaskedForward } from '../runtime/calibration/masked-forward.ts';
import { openMaskedForward } from '../runtime/calibration/ort-masked-forward.ts';
import { Xoshiro128ss } from '../runtime/engine/rng.ts';
import { hasUniformLayers } from '../runtime/model/hf.ts';
import { type ModelSpec, parameterCounts } from '../runtime/model/spec.ts';
import { defaultRecoveryOptions } from '../runtime/train/recover.ts';
import { SharedTeacher } from '../runtime/train/shared-teacher.ts';
import type { CalibrationSet } from './calibration.ts';
import type { DepthUnit, WidthPolicy } from './candidates.ts';
import { type DepthRule, depthRules } from './depth-rule.ts';
import { MopInputError } from './errors.ts';
import { ampImportance, type ImportanceCriterion, importanceCriteria } from './importance.ts';
import type { LatencyProfile } from './latency-profile.ts';
import { budgetTrains, type MopRecoveryOptions, type RecoveryProgress, recoveryBudget } from './mop-recovery.ts';
import { latencyCost, paramCost, plannedCost, type PruneCost } from './prune-cost.ts';
import { fullPlan, plannedBlockParams, type PruningPlan } from './pruning-plan.ts';
import type { ParamCounts, Strategy } from './report.ts';
import { isSelectionCriterion, type SelectionCriterion, selectionCriteria } from './selection.ts';
import type { ModelWeights } from './surgery.ts';

/** What runMop is asked (MopOptions), checked and with every default filled in (MopSettings). */
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
   * Every kept layer keeps the same heads and MLP width, with both sub-blocks (depth is still
   * chosen freely): the result is a plain model of its family that other tools load. Needs whole
   * layers as the depth unit and an input whose layers are equal and complete.
   */
  uniform?: boolean;
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
  /** Seconds the whole prune has left, predicted (src/service/prune/prune-eta.ts); absent until there is enough to go on. */
  etaSeconds?: number;
  /** The last progress of a prune: the model is at the target and recovered. */
  done?: true;
}

/** The ratio must land within this of the target (fraction, i.e. ±0.5 percentage points). */
export const TARGET_TOLERANCE = 0.005;
export const MAX_TARGET = 0.9;

/** Checks that need no model: a MopInputError naming the bad value and what is accepted. */
export function validateMopOptions(o: Pick<MopOptions, 'target' | 'strategy' | 'criterion' | 'importance' | 'stepLayers' | 'widthSplit' | 'widthNormalize' | 'widthMultiple' | 'depthUnit' | 'depthRule' | 'uniform'>): void {
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
  if (o.uniform && o.depthUnit === 'sublayer') {
    throw new MopInputError('--uniform keeps every layer whole (attention and MLP), so the depth unit must be layer, not sublayer');
  }
}

/** With `uniform`: the input's layers must already be equal and complete, or no prune can make them so. */
function validateUniformInput(spec: ModelSpec): void {
  if (!hasUniformLayers(spec)) {
    const shapes = spec.layers.map((l, i) => `L${i}:${l.heads}/${l.kvHeads}/${l.ffn}`).join(' ');
    throw new MopInputError(`--uniform needs a model whose layers all have the same heads and MLP width with both sub-blocks (heads/kv heads/ffn: ${shapes}); prune the dense model instead`);
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

/** MopOptions resolved for one run of one model: defaults filled in, budgets in the cost's unit. */
export interface MopSettings {
  options: MopOptions;
  base: ModelSpec;
  inputParams: ParamCounts;
  /** Block parameters the ratio is measured against. */
  referenceParams: number;
  strategy: Strategy;
  criterion: SelectionCriterion;
  importance: ImportanceCriterion;
  stepLayers: number;
  depthUnit: DepthUnit;
  depthRule: DepthRule;
  widthMultiple: number;
  policy: WidthPolicy;
  profile: LatencyProfile | undefined;
  /** Every budget is in this cost's unit: block parameters, or predicted step time (µs). */
  cost: PruneCost;
  /** The input's cost that the target is a share of, and the cost to end at. */
  reference: number;
  targetBlocks: number;
  /** The recovery options, with the prune's one distillation teacher when the loss is kd. */
  recovery: MopRecoveryOptions | undefined;
  sharedTeacher: SharedTeacher | undefined;
  /** Whether every candidate is fine-tuned before it is scored. */
  candidateRecovery: boolean;
  /** The 'random' criterion's coin: seeded, so a run repeats. */
  coin: Xoshiro128ss;
  costOf(plan: PruningPlan): number;
  /** Ratio of a cost against the reference, and of a plan's block parameters. */
  ratioOf(blocks: number): number;
  paramRatioOf(plan: PruningPlan): number;
  /** A masked-forward session over a model (calibration sequence length, threads, device). */
  open(m: ModelWeights): Promise<MaskedForward>;
}

/** Check `options` against the model and resolve them; a MopInputError names what is wrong. */
export function resolveMopOptions(input: ModelWeights, options: MopOptions): MopSettings {
  validateMopOptions(options);
  const base = input.spec;
  const strategy = options.strategy ?? 'mop';
  const inputParams = parameterCounts(base);
  const referenceParams = options.referenceBlocks ?? inputParams.blocks;
  validateModel(base, strategy, options.target, referenceParams);
  if (options.uniform) validateUniformInput(base);
  const profile = options.latencyProfile;
  const cost: PruneCost = profile ? latencyCost(profile.coefficients) : paramCost;
  const costOf = (plan: PruningPlan) => plannedCost(base, plan, cost);
  const reference = profile ? costOf(fullPlan(base)) : referenceParams;
  validateCalibration(base, options.calibration);
  const widthMultiple = options.widthMultiple ?? 1;
  return {
    options,
    base,
    inputParams,
    referenceParams,
    strategy,
    criterion: options.criterion ?? 'ppl',
    importance: typeof options.importance === 'string' ? importanceCriteria[options.importance]! : (options.importance ?? ampImportance),
    stepLayers: options.stepLayers ?? 1,
    depthUnit: options.depthUnit ?? 'layer',
    depthRule: options.depthRule ?? 'score',
    widthMultiple,
    policy: { split: options.widthSplit ?? 'param-share', normalize: options.widthNormalize ?? 'layer', multiple: widthMultiple, ...(options.uniform && { uniform: true }) },
    profile,
    cost,
    reference,
    targetBlocks: Math.round((1 - options.target) * reference),
    ...recoverySettings(options.recovery),
    coin: new Xoshiro128ss((options.seed ?? options.calibration.description.seed) ^ 0x5eed),
    costOf,
    ratioOf: (blocks) => 1 - blocks / reference,
    paramRatioOf: (plan) => 1 - plannedBlockParams(base, plan) / referenceParams,
    open: (m) =>
      openMaskedForward(m.spec, m.weights, {
        maxSeqLen: options.calibration.seqLen,
        ...(options.threads !== undefined && { threads: options.threads }),
        ...(options.device && { device: options.device }),
      }),
  };
}

/** Distillation: one teacher session and log-probability cache for every recovery of this prune. */
function recoverySettings(asked: MopRecoveryOptions | undefined): Pick<MopSettings, 'recovery' | 'sharedTeacher' | 'candidateRecovery'> {
  const sharedTeacher = asked?.data.teacher && { ...defaultRecoveryOptions, ...asked.recipe }.loss === 'kd' ? new SharedTeacher(asked.data.teacher) : undefined;
  const recovery = asked && sharedTeacher ? { ...asked, data: { ...asked.data, sharedTeacher } } : asked;
  return { recovery, sharedTeacher, candidateRecovery: recovery !== undefined && budgetTrains(recoveryBudget(recovery, 'candidate')) };
}

function validateCalibration(base: ModelSpec, calibration: CalibrationSet): void {
  if (calibration.seqLen > base.maxContext) {
    throw new MopInputError(`calibration sequences of ${calibration.seqLen} tokens exceed the model's context of ${base.maxContext}`);
  }
  const vocabTooSmall = calibration.sequences.some((s) => s.some((t) => t >= base.vocabSize));
  if (vocabTooSmall) throw new MopInputError(`calibration tokens fall outside the model's vocabulary of ${base.vocabSize}`);
}
