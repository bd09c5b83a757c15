/**
 * Learning rate at each step: linear warm-up from lr/warmup to lr over `warmup` steps, then cosine
 * decay to minRatio·lr at the last step. Steps are 0-based.
 */
export interface LrSchedule {
  lr: number;
  steps: number;
  warmup: number;
  /** Floor of the decay as a fraction of lr (default 0.1). */
  minRatio?: number;
}

/**
 * The same shape over a fraction of a wall-clock budget instead of steps (a time budget does not
 * know its step count in advance): warm-up over the first `warmupShare` of the time, then cosine
 * decay to minRatio·lr at the end of it.
 */
export function learningRateAtFraction(fraction: number, lr: number, warmupShare: number, minRatio = 0.1): number {
  const f = Math.min(Math.max(fraction, 0), 1);
  if (f < warmupShare) return (lr * Math.max(f, 1e-3 * warmupShare)) / warmupShare;
  const progress = warmupShare >= 1 ? 1 : (f - warmupShare) / (1 - warmupShare);
  const min = lr * minRatio;
  return min + (lr - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

export function learningRateAt(step: number, s: LrSchedule): number {
  const warmup = Math.min(s.warmup, s.steps);
  if (step < warmup) return (s.lr * (step + 1)) / warmup;
  const decaySteps = s.steps - warmup;
  if (decaySteps <= 1) return s.lr;
  const progress = Math.min(1, (step - warmup) / (decaySteps - 1));
  const min = s.lr * (s.minRatio ?? 0.1);
  return min + (s.lr - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
