import type { OptimizedTensor } from './adamw.ts';
import type { BatchSampler, TrainingBatch } from './batch-sampler.ts';
import { clipScale } from './grad-clip.ts';
import { learningRateAt, learningRateAtFraction, type LrSchedule } from './lr-schedule.ts';
import type { StepOptimizer } from './step-optimizer.ts';
import type { TeacherTargets, TrainingSession } from './training-session.ts';

/**
 * The training loop: batch → one graph run (loss + gradients) → clip → optimizer, `steps` times.
 * Between steps it yields to the event loop and checks the AbortSignal (throwing its reason, as
 * MoP does), and reports progress. A non-finite loss or gradient norm stops the run before that
 * step's update and restores the weights of the last step whose loss was finite.
 */
export interface TrainProgress {
  /** Steps done (1-based). */
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Trained positions per second of wall time so far (teacher passes included). */
  tokensPerSecond: number;
  elapsedSeconds: number;
  etaSeconds: number;
}

export interface TrainLoopOptions {
  /** Most steps (with `seconds`: a cap). */
  steps: number;
  schedule: LrSchedule;
  /**
   * A wall-clock budget for the loop instead of a step count: steps run while one more (at the mean
   * step time so far) fits, the learning rate follows the schedule's shape over the fraction of the
   * time used (warm-up over `schedule.warmup / schedule.steps` of it). Not repeatable bit for bit:
   * the step count depends on the machine's speed.
   */
  seconds?: number;
  /** Global gradient-norm limit; ≤ 0 or Infinity = off. */
  clip: number;
  signal?: AbortSignal;
  onProgress?: (p: TrainProgress) => void;
  /** Rows per ONNX Runtime run within a step (TrainingSession.run); default: the whole batch. */
  rowsPerRun?: number;
  /** Distillation targets for a batch (required when the session's loss is 'kd'). */
  teacher?: (batch: TrainingBatch) => Promise<TeacherTargets>;
}

export interface TrainOutcome {
  /** Updates applied to the weights the run ends with. */
  updates: number;
  /** Loss of each step that ran (the last one is the non-finite one when stopped early). */
  losses: number[];
  stopped: 'completed' | 'non-finite';
  /** 1-based step whose loss or gradient norm was not finite. */
  nonFiniteStep?: number;
  tokens: number;
  seconds: number;
}

/** Train `params` (the tensors `optimizer` was made over; their `data` may be replaced by it, see StepOptimizer). */
export async function trainSteps(
  session: TrainingSession,
  params: ReadonlyMap<string, OptimizedTensor>,
  optimizer: StepOptimizer,
  sampler: BatchSampler,
  options: TrainLoopOptions,
): Promise<TrainOutcome> {
  const losses: number[] = [];
  const start = performance.now();
  let tokens = 0;
  const budget = options.seconds;
  const warmupShare = options.schedule.steps > 0 ? Math.min(options.schedule.warmup, options.schedule.steps) / options.schedule.steps : 0;
  for (let step = 0; step < options.steps; step++) {
    await new Promise((resolve) => setImmediate(resolve));
    options.signal?.throwIfAborted();
    const before = (performance.now() - start) / 1000;
    // A time budget: stop when one more step at the mean step time would run past it (one step at least).
    if (budget !== undefined && step > 0 && before + before / step > budget) break;
    const batch = sampler.next();
    const teacher = options.teacher ? await options.teacher(batch) : undefined;
    const values = new Map([...params].map(([name, p]) => [name, p.data]));
    const result = await session.run(batch, values, teacher, { ...(options.rowsPerRun !== undefined && { rowsPerRun: options.rowsPerRun }), ...(options.signal && { signal: options.signal }) });
    losses.push(result.loss);
    const norm = await optimizer.gradientNorm(result.grads);
    if (!Number.isFinite(result.loss) || !Number.isFinite(norm)) {
      // Back to the weights of the last step whose loss was finite (before its update).
      await optimizer.restoreLastGood();
      return { updates: optimizer.steps === 0 ? 0 : optimizer.steps - 1, losses, stopped: 'non-finite', nonFiniteStep: step + 1, tokens, seconds: (performance.now() - start) / 1000 };
    }
    const lr = budget === undefined ? learningRateAt(step, options.schedule) : learningRateAtFraction(before / budget, options.schedule.lr, warmupShare, options.schedule.minRatio);
    // This step's loss was finite: its weights become the last good ones as the update reads them.
    await optimizer.update(lr, clipScale(norm, options.clip));
    tokens += batch.tokens;
    const elapsed = (performance.now() - start) / 1000;
    const perStep = elapsed / (step + 1);
    // With a time budget the total is an estimate: the steps done plus those that still fit.
    const steps = budget === undefined ? options.steps : Math.min(options.steps, step + 1 + Math.max(0, Math.floor((budget - elapsed) / perStep)));
    options.onProgress?.({
      step: step + 1,
      steps,
      loss: result.loss,
      lr,
      gradNorm: norm,
      tokensPerSecond: tokens / elapsed,
      elapsedSeconds: elapsed,
      etaSeconds: perStep * (steps - step - 1),
    });
  }
  return { updates: optimizer.steps, losses, stopped: 'completed', tokens, seconds: (performance.now() - start) / 1000 };
}
