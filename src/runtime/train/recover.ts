import os from 'node:os';
import { expectedWeightShapes, type ModelSpec, parameterCounts } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import type { OptimizedTensor } from './adamw.ts';
import { BatchSampler } from './batch-sampler.ts';
import { RecoveryInputError } from './errors.ts';
import { initLoraAdapters, type LoraConfig, type LoraTarget, loraTargets, mergeLora, validateLoraConfig } from './lora.ts';
import { type TrainOutcome, type TrainProgress, trainSteps } from './train-loop.ts';
import { SharedTeacher } from './shared-teacher.ts';
import { InThreadAdamW, type StepOptimizer } from './step-optimizer.ts';
import { CachedTeacher } from './teacher-cache.ts';
import { ThreadedAdamW } from './threaded-adamw.ts';
import { TeacherSession, TrainingSession } from './training-session.ts';

/**
 * Recovery fine-tuning of a (pruned) model: full or LoRA, next-token cross-entropy or distillation
 * from a teacher (the dense model), AdamW with warm-up + cosine decay and gradient clipping, on the
 * CPU. The result has the input's shape (LoRA adapters are merged), so serving it costs what the
 * pruned model costs. Deterministic for a seed with a fixed thread count.
 */
export type RecoveryKind = 'lora' | 'full';
export type RecoveryLoss = 'ce' | 'kd';
export const recoveryKinds: readonly RecoveryKind[] = ['lora', 'full'];
export const recoveryLosses: readonly RecoveryLoss[] = ['ce', 'kd'];

export interface RecoveryOptions {
  kind: RecoveryKind;
  /** Optimizer updates; 0 returns the model unchanged. With `seconds`, the most steps. */
  steps: number;
  /**
   * Wall-clock budget of the training loop instead of `steps` (see TrainLoopOptions.seconds): the
   * warm-up takes warmup / steps of the time. Undefined: train exactly `steps`.
   */
  seconds?: number;
  /** Peak learning rate (after warm-up). */
  lr: number;
  loss: RecoveryLoss;
  /** With 'kd': loss = α·KL(teacher ‖ model) + (1 − α)·CE. */
  kdAlpha: number;
  /** Sequences per step. */
  batch: number;
  /** Positions trained per sequence (windows need seqLen + 1 tokens; shorter ones are padded). */
  seqLen: number;
  warmup: number;
  /** Decoupled weight decay (AdamW's λ), on matrices only. */
  weightDecay: number;
  /** Global gradient-norm limit; 0 = off. */
  clip: number;
  seed: number;
  loraRank: number;
  loraAlpha: number;
  loraTargets: readonly LoraTarget[];
  /** ONNX Runtime intra-op threads (default: all cores). Runs repeat bit for bit at a fixed count. */
  threads?: number;
  /**
   * Rows of a step's batch per ONNX Runtime run; the pieces' gradients are combined, and a cancel
   * is seen between pieces. Default: trainingRowsPerRun (about 4 GFLOP of work per run, so the
   * whole batch on small models and one row at a time on a 100M-parameter one).
   */
  rowsPerRun?: number;
  /** Memory for cached teacher log-probabilities, per window, reused across epochs (default 256 MiB; 0 = recompute every step). */
  teacherCacheMiB?: number;
}

/**
 * The recipe measured best on stories260K at MoP 40% (src/runtime/train/README.md): full fine-tuning,
 * 3:1 distillation/cross-entropy mix, 16 × 128; 1000 steps: 1.06× dense on held-out text when the
 * recovery text includes text sampled from the model (the prune default), 3× the steps 1.02×
 * (docs/recovery-budget-report.md).
 */
export const defaultRecoveryOptions: RecoveryOptions = {
  kind: 'full',
  steps: 1000,
  lr: 2e-3,
  loss: 'kd',
  kdAlpha: 0.75,
  batch: 16,
  seqLen: 128,
  warmup: 20,
  weightDecay: 0,
  clip: 1,
  seed: 0,
  loraRank: 8,
  loraAlpha: 16,
  loraTargets: loraTargets,
};

/** Throws RecoveryInputError (one line) for any value recovery cannot run with; `spec` adds model-dependent checks. */
export function validateRecoveryOptions(o: RecoveryOptions, spec?: ModelSpec): void {
  const fail = (msg: string): never => {
    throw new RecoveryInputError(msg);
  };
  if (!recoveryKinds.includes(o.kind)) fail(`unknown recovery kind '${String(o.kind)}' (expected ${recoveryKinds.join(' or ')})`);
  if (!recoveryLosses.includes(o.loss)) fail(`unknown recovery loss '${String(o.loss)}' (expected ${recoveryLosses.join(' or ')})`);
  if (!Number.isInteger(o.steps) || o.steps < 0) fail(`recovery steps must be a non-negative integer, got ${o.steps}`);
  if (o.seconds !== undefined && !(Number.isFinite(o.seconds) && o.seconds > 0)) fail(`recovery seconds must be a positive number, got ${o.seconds}`);
  if (!Number.isFinite(o.lr) || o.lr <= 0) fail(`recovery learning rate must be a positive finite number, got ${o.lr}`);
  if (!(o.kdAlpha >= 0 && o.kdAlpha <= 1)) fail(`distillation share kdAlpha must be in [0, 1], got ${o.kdAlpha}`);
  if (!Number.isInteger(o.batch) || o.batch < 1) fail(`recovery batch must be a positive integer, got ${o.batch}`);
  if (!Number.isInteger(o.seqLen) || o.seqLen < 1) fail(`recovery sequence length must be a positive integer, got ${o.seqLen}`);
  if (!Number.isInteger(o.warmup) || o.warmup < 0) fail(`warm-up steps must be a non-negative integer, got ${o.warmup}`);
  if (!Number.isFinite(o.weightDecay) || o.weightDecay < 0) fail(`weight decay must be a non-negative finite number, got ${o.weightDecay}`);
  if (!(o.clip >= 0)) fail(`gradient clip must be ≥ 0 (0 = off), got ${o.clip}`);
  if (!Number.isFinite(o.seed)) fail(`seed must be a finite number, got ${o.seed}`);
  if (o.threads !== undefined && (!Number.isInteger(o.threads) || o.threads < 1)) fail(`threads must be a positive integer, got ${o.threads}`);
  if (o.rowsPerRun !== undefined && (!Number.isInteger(o.rowsPerRun) || o.rowsPerRun < 1)) fail(`rows per run must be a positive integer, got ${o.rowsPerRun}`);
  if (o.teacherCacheMiB !== undefined && !(o.teacherCacheMiB >= 0 && Number.isFinite(o.teacherCacheMiB))) fail(`teacher cache must be a non-negative number of MiB, got ${o.teacherCacheMiB}`);
  if (o.kind === 'lora') {
    if (!Number.isInteger(o.loraRank) || o.loraRank <= 0) fail(`LoRA rank must be a positive integer, got ${o.loraRank}`);
    if (!Number.isFinite(o.loraAlpha) || o.loraAlpha <= 0) fail(`LoRA alpha must be a positive finite number, got ${o.loraAlpha}`);
    if (spec) validateLoraConfig(spec, loraConfig(o));
  }
  if (spec && o.seqLen > spec.maxContext) fail(`recovery sequence length ${o.seqLen} exceeds the model's context of ${spec.maxContext}`);
}

/** Work one ONNX Runtime run of training may take: a few tenths of a second on 2 cores. */
const RUN_FLOPS = 4e9;

/**
 * Tokens a run holds at least: every run returns (and the step sums) the gradient of every
 * trainable tensor, a cost of the model's size whatever the run's tokens, and MatMuls of a few
 * rows run below their rate; at a few hundred tokens both stop mattering.
 */
const MIN_RUN_TOKENS = 512;

/**
 * Default rows per run: training a row costs about 6 × parameters × tokens FLOPs (forward and
 * backward), so the batch is cut into pieces of about RUN_FLOPS each, but of MIN_RUN_TOKENS at
 * least; a cancel is seen between pieces (within a second on small models, one piece of
 * MIN_RUN_TOKENS on large ones). Depends on the shape only, so a seeded run stays repeatable.
 */
export function trainingRowsPerRun(spec: ModelSpec, seqLen: number, batch: number): number {
  const perRow = 6 * parameterCounts(spec).total * seqLen;
  return Math.min(batch, Math.max(1, Math.floor(RUN_FLOPS / perRow), Math.ceil(MIN_RUN_TOKENS / seqLen)));
}

/**
 * Trainable parameters from which AdamW and the gradient norm run in worker threads (one per
 * ONNX Runtime thread): below it an update takes milliseconds, less than starting a thread.
 */
export const THREADED_OPTIMIZER_MIN_PARAMETERS = 1 << 22;

export type OptimizerFactory = (params: ReadonlyMap<string, OptimizedTensor>, weightDecay: number, threads: number) => StepOptimizer;

/** The optimizer for `params`: in this thread for small models, spread over `threads` worker threads from THREADED_OPTIMIZER_MIN_PARAMETERS. */
export const recoveryOptimizer: OptimizerFactory = (params, weightDecay, threads) => {
  const trainable = [...params.values()].reduce((n, p) => n + p.data.length, 0);
  if (threads < 2 || trainable < THREADED_OPTIMIZER_MIN_PARAMETERS) return new InThreadAdamW(params, { weightDecay });
  return ThreadedAdamW.start(params, { weightDecay }, threads);
};

function loraConfig(o: RecoveryOptions): LoraConfig {
  return { rank: o.loraRank, alpha: o.loraAlpha, targets: o.loraTargets };
}

export interface ModelWeights {
  spec: ModelSpec;
  weights: Weights;
}

export interface RecoveryData {
  /** Token windows of recovery text (e.g. BOS + seqLen tokens each); never the held-out text. */
  windows: readonly Int32Array[];
  /** Per window, 1 at the positions whose token is trained on (assistant-only loss); default: all. */
  trainMasks?: readonly Uint8Array[];
  /** The distillation teacher (the dense model), required for loss 'kd'. */
  teacher?: ModelWeights;
  /**
   * The same teacher kept across several recover() runs (one prune's candidates and final run):
   * its session and cached log-probabilities are reused; its owner releases it. Stands in for `teacher`.
   */
  sharedTeacher?: SharedTeacher;
}

export interface RecoveryHooks {
  signal?: AbortSignal;
  onProgress?: (p: TrainProgress) => void;
  /** Makes the optimizer (default: recoveryOptimizer). */
  optimizer?: OptimizerFactory;
}

export interface RecoveryReport {
  recipe: RecoveryOptions;
  stopped: TrainOutcome['stopped'];
  nonFiniteStep?: number;
  updates: number;
  trainableParameters: number;
  /** Mean loss of the first and of the last min(10, steps) steps. */
  firstLoss: number;
  finalLoss: number;
  losses: number[];
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  /** Teacher forward passes run (kd); fewer than the steps when the cache holds the windows. */
  teacherPasses?: number;
}

export interface RecoveryResult extends ModelWeights {
  report: RecoveryReport;
}

export async function recover(model: ModelWeights, overrides: Partial<RecoveryOptions>, data: RecoveryData, hooks: RecoveryHooks = {}): Promise<RecoveryResult> {
  const o: RecoveryOptions = { ...defaultRecoveryOptions, ...overrides };
  const { spec } = model;
  validateRecoveryOptions(o, spec);
  validateData(spec, o, data);
  hooks.signal?.throwIfAborted();

  const shapes = expectedWeightShapes(spec);
  const params = new Map<string, OptimizedTensor>();
  const lora = o.kind === 'lora' ? loraConfig(o) : undefined;
  if (lora) {
    for (const [name, t] of initLoraAdapters(spec, lora, o.seed)) params.set(name, { data: t.data, decay: true });
  } else {
    for (const [name, shape] of shapes) params.set(name, { data: Float32Array.from(model.weights.get(name)!.data), decay: shape.length >= 2 });
  }

  const session = await TrainingSession.create(spec, model.weights, { seqLen: o.seqLen, loss: o.loss, ...(lora && { lora }) }, o.threads);
  let optimizer: StepOptimizer | undefined;
  let trained = false;
  let teacher: CachedTeacher | undefined;
  let teacherSession: TeacherSession | undefined;
  let passesBefore = 0;
  let outcome: TrainOutcome;
  try {
    optimizer = (hooks.optimizer ?? recoveryOptimizer)(params, o.weightDecay, o.threads ?? os.availableParallelism());
    const cacheBytes = (o.teacherCacheMiB ?? 256) * 2 ** 20;
    if (o.loss === 'kd' && data.sharedTeacher) {
      teacher = await data.sharedTeacher.cached(o.seqLen, o.threads, cacheBytes);
      passesBefore = teacher.passes;
    } else if (o.loss === 'kd') {
      teacherSession = await TeacherSession.create(data.teacher!.spec, data.teacher!.weights, o.seqLen, o.threads);
      teacher = new CachedTeacher(teacherSession, o.seqLen * spec.vocabSize, cacheBytes);
    }
    const cache = teacher;
    const rowsPerRun = o.rowsPerRun ?? trainingRowsPerRun(spec, o.seqLen, o.batch);
    const pieces = { rowsPerRun, ...(hooks.signal && { signal: hooks.signal }) };
    outcome = await trainSteps(session, params, optimizer, new BatchSampler(data.windows, o.batch, o.seqLen, o.seed, data.trainMasks), {
      steps: o.steps,
      rowsPerRun,
      ...(o.seconds !== undefined && { seconds: o.seconds }),
      schedule: { lr: o.lr, steps: o.steps, warmup: o.warmup },
      clip: o.clip,
      ...(hooks.signal && { signal: hooks.signal }),
      ...(hooks.onProgress && { onProgress: hooks.onProgress }),
      ...(cache && { teacher: async (batch) => ({ logProbs: await cache.logProbs(batch, pieces), alpha: o.kdAlpha }) }),
    });
    trained = true;
  } finally {
    // Each released whatever the others do: a failed release must not leave the optimizer's threads running.
    const released = await Promise.allSettled([optimizer?.close(), session.release(), teacherSession?.release()]);
    const failed = released.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    // After a failed run its own error is the one to report.
    if (failed && trained) throw failed.reason;
  }

  let weights: Weights;
  if (lora) {
    const adapters: Weights = new Map(session.graph.trainable.map((t) => [t.name, { shape: t.shape, data: params.get(t.name)!.data }]));
    weights = mergeLora(spec, model.weights, adapters, lora);
  } else {
    weights = new Map(model.weights);
    for (const [name, p] of params) weights.set(name, { shape: shapes.get(name)!, data: p.data });
  }
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const k = Math.min(10, outcome.losses.length);
  const report: RecoveryReport = {
    recipe: o,
    stopped: outcome.stopped,
    ...(outcome.nonFiniteStep !== undefined && { nonFiniteStep: outcome.nonFiniteStep }),
    updates: outcome.updates,
    trainableParameters: [...params.values()].reduce((n, p) => n + p.data.length, 0),
    firstLoss: mean(outcome.losses.slice(0, k)),
    finalLoss: mean(outcome.losses.slice(outcome.losses.length - k)),
    losses: outcome.losses,
    tokens: outcome.tokens,
    seconds: outcome.seconds,
    tokensPerSecond: outcome.seconds > 0 ? outcome.tokens / outcome.seconds : 0,
    ...(teacher && { teacherPasses: teacher.passes - passesBefore }),
  };
  return { spec, weights, report };
}

function validateData(spec: ModelSpec, o: RecoveryOptions, data: RecoveryData): void {
  if (data.windows.length === 0) throw new RecoveryInputError('recovery data has no token windows');
  for (const [i, w] of data.windows.entries()) {
    if (w.length < 2) throw new RecoveryInputError(`recovery window ${i} has ${w.length} tokens; a window needs at least 2`);
    for (const id of w) if (!(id >= 0 && id < spec.vocabSize)) throw new RecoveryInputError(`recovery window ${i} has token id ${id}, outside the vocabulary (size ${spec.vocabSize})`);
  }
  if (o.loss === 'kd') {
    const t = data.sharedTeacher?.model ?? data.teacher;
    if (!t) throw new RecoveryInputError(`recovery loss 'kd' needs a teacher model`);
    if (t.spec.vocabSize !== spec.vocabSize) throw new RecoveryInputError(`teacher vocabulary (${t.spec.vocabSize}) differs from the model's (${spec.vocabSize})`);
    if (o.seqLen > t.spec.maxContext) throw new RecoveryInputError(`recovery sequence length ${o.seqLen} exceeds the teacher's context of ${t.spec.maxContext}`);
  }
}
