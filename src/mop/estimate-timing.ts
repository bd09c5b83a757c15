import { openMaskedForward } from '../runtime/calibration/ort-masked-forward.ts';
import { toBatches } from '../runtime/calibration/token-batch.ts';
import type { DeviceName } from '../runtime/device/device.ts';
import { Xoshiro128ss } from '../runtime/engine/rng.ts';
import type { ModelSpec } from '../runtime/model/spec.ts';
import { recover, trainingRowsPerRun } from '../runtime/train/recover.ts';
import { SharedTeacher } from '../runtime/train/shared-teacher.ts';
import type { EstimateRecipe, MeasuredStepTimes } from './estimate.ts';
import { median } from '../runtime/stats/sample-stats.ts';
import { fullPlan } from './pruning-plan.ts';
import { CandidateScorer } from './selection.ts';
import { generateSelfText, SELF_TEXT_PARALLEL } from './self-text.ts';
import type { ModelWeights } from './surgery.ts';

/**
 * A short measured calibration of a prune's cost on this machine: a scoring session built and
 * calibration passes run on the model's own shape, and a few training steps of the recipe's kind
 * and loss (one ONNX Runtime run of rows each), each timed warm. Token ids are seeded noise: the time depends on the
 * shape, not the text. Seconds on the bundled model; about a minute on a 100M-parameter one.
 */
export interface TimingOptions {
  threads?: number | undefined;
  device?: DeviceName | undefined;
  signal?: AbortSignal | undefined;
  /** Training steps timed after two that warm up (default 3; the median counts). */
  timedSteps?: number;
}

function noise(spec: ModelSpec, count: number, length: number, seed: number, bos: number | undefined): Int32Array[] {
  const rng = new Xoshiro128ss(seed);
  return Array.from({ length: count }, () => {
    const w = new Int32Array(length);
    for (let i = 0; i < length; i++) w[i] = Math.floor(rng.nextFloat() * spec.vocabSize);
    if (bos !== undefined) w[0] = bos;
    return w;
  });
}

async function timeScoring(model: ModelWeights, r: EstimateRecipe, o: TimingOptions): Promise<Pick<MeasuredStepTimes, 'scoringOpenSeconds' | 'scoringPassSeconds' | 'tapsPassSeconds'>> {
  const seconds = (since: number) => (performance.now() - since) / 1000;
  const open = () => openMaskedForward(model.spec, model.weights, { maxSeqLen: r.seqLen, ...(o.threads !== undefined && { threads: o.threads }), ...(o.device && { device: o.device }) });
  const batches = toBatches(noise(model.spec, r.samples, r.seqLen, 1, model.spec.bosTokenId));
  const plan = fullPlan(model.spec);
  // The process's first session builds cold; a prune builds many: time the next three, each with
  // its first pass (as each recovered candidate's is), and keep the median (one build is long
  // enough for a busy moment to double it; builds also get faster as the process warms).
  await (await open()).release();
  const opened: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const forward = await open();
    try {
      await new CandidateScorer(forward, batches, 'ppl').candidate(plan, o.signal);
      opened.push(seconds(t0));
    } finally {
      await forward.release();
    }
  }
  const forward = await open();
  try {
    const scorer = new CandidateScorer(forward, batches, 'ppl');
    await scorer.candidate(plan, o.signal);
    // The median of three warm passes: one pass is short enough for a busy machine to double it.
    const passes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t1 = performance.now();
      await scorer.candidate(plan, o.signal);
      passes.push(seconds(t1));
    }
    const scoringPassSeconds = median(passes);
    const t2 = performance.now();
    await scorer.parent(plan, o.signal);
    return { scoringOpenSeconds: Math.max(0, median(opened) - scoringPassSeconds), scoringPassSeconds, tapsPassSeconds: seconds(t2) };
  } finally {
    await forward.release();
  }
}

/**
 * One training step of the recipe's batch: rows run a piece at a time, so a few pieces time it.
 * Two runs, as a prune makes many: the first warms up (the process's first graph, sessions and
 * optimizer code run cold), the second is timed: its start, and the median of its steps after two.
 * The distillation teacher is shared by both, as a prune shares one.
 */
async function timeTraining(model: ModelWeights, rec: NonNullable<EstimateRecipe['recovery']>, o: TimingOptions): Promise<Pick<MeasuredStepTimes, 'trainStepSeconds' | 'recoveryStartSeconds'>> {
  const rowsPerRun = trainingRowsPerRun(model.spec, rec.seqLen, rec.batch);
  const rows = Math.min(rec.batch, rowsPerRun);
  const timed = o.timedSteps ?? 3;
  const warmup = 2;
  const recipe = {
    kind: rec.kind,
    loss: rec.loss,
    batch: rows,
    seqLen: rec.seqLen,
    warmup: 0,
    loraRank: rec.loraRank,
    loraAlpha: 2 * rec.loraRank,
    rowsPerRun,
    // Every window new, as in a first epoch: the teacher runs each step.
    teacherCacheMiB: 0,
    ...(o.threads !== undefined && { threads: o.threads }),
  };
  const teacher = new SharedTeacher(model);
  const windows = noise(model.spec, rows * (1 + warmup + timed), rec.seqLen + 1, 2, model.spec.bosTokenId);
  const signal = o.signal && { signal: o.signal };
  try {
    await recover(model, { ...recipe, steps: 1 }, { windows: windows.slice(0, rows), sharedTeacher: teacher }, { ...signal });
    const elapsed: number[] = [];
    const t0 = performance.now();
    const result = await recover(model, { ...recipe, steps: warmup + timed }, { windows: windows.slice(rows), sharedTeacher: teacher }, { ...signal, onProgress: (p) => elapsed.push(p.elapsedSeconds) });
    const wall = (performance.now() - t0) / 1000;
    const deltas = elapsed.slice(warmup).map((e, i) => e - elapsed[warmup + i - 1]!);
    const perRun = median(deltas);
    // A run's start: graph and session built, and its first step's extra time.
    const start = wall - result.report.seconds + Math.max(0, elapsed[0]! - perRun);
    return { trainStepSeconds: perRun * Math.ceil(rec.batch / rows), recoveryStartSeconds: start };
  } finally {
    await teacher.release();
  }
}

/**
 * Sampling a token of recovery text: the sampler itself timed (batched decode, drawing, new
 * samples' prefills) from BOS, so the samples are the model's own text and end at its own EOS as
 * the real ones do. A run of 2n tokens minus a run of n, over n: what every run pays once (its
 * session's build and first runs of each shape) cancels out; n doubles until a run of n takes two
 * seconds, so the difference stands above the noise on a small model.
 */
async function timeSampling(model: ModelWeights, o: TimingOptions): Promise<number> {
  const ids = { bosTokenId: model.spec.bosTokenId, eosTokenIds: model.spec.eosTokenIds };
  const run = async (tokens: number): Promise<number> => {
    const t0 = performance.now();
    await generateSelfText(model, ids, { tokens, seed: 0, prompts: [[]], ...(o.threads !== undefined && { threads: o.threads }), ...(o.signal && { signal: o.signal }) });
    return (performance.now() - t0) / 1000;
  };
  await run(SELF_TEXT_PARALLEL * 4);
  let n = SELF_TEXT_PARALLEL * 32;
  let once = await run(n);
  while (once < 2 && n < 2 ** 15) {
    n *= 2;
    once = await run(n);
  }
  const twice = await run(2 * n);
  // A difference lost in noise: the whole run over its tokens, an upper bound.
  return twice > once ? (twice - once) / n : twice / (2 * n);
}

/** Measure the step times `estimatePrune` extrapolates from (see TimingOptions). */
export async function measureStepTimes(model: ModelWeights, r: EstimateRecipe, o: TimingOptions = {}): Promise<MeasuredStepTimes> {
  const scoring = await timeScoring(model, r, o);
  const training = r.recovery && (r.recovery.candidateSteps > 0 || r.recovery.finalSteps > 0 || r.recovery.candidateSeconds !== undefined || r.recovery.finalSeconds !== undefined) ? await timeTraining(model, r.recovery, o) : { trainStepSeconds: 0, recoveryStartSeconds: 0 };
  const sampling = (r.recovery?.sampledTokens ?? 0) > 0 ? { sampleTokenSeconds: await timeSampling(model, o) } : {};
  return { ...scoring, ...training, ...sampling };
}
