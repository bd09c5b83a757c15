import { type ModelSpec, parameterCounts } from '../runtime/model/spec.ts';
import { loraSites, loraTargets } from '../runtime/train/lora.ts';
import { MopInputError } from './errors.ts';
import { TARGET_TOLERANCE } from './mop-options.ts';

/**
 * What a prune will cost before it runs: how many candidates MoP scores (and fine-tunes), how many
 * tokens recovery trains on, the wall time from step times measured on the model's own shape
 * (estimate-timing.ts), and the peak memory from the parameter count, the optimizer state and the
 * activations of one training run. `mop prune --estimate`, the admin API's `dry_run` and the
 * memory check before every prune all use this one model.
 */
export interface EstimateRecipe {
  target: number;
  strategy: 'mop' | 'depth' | 'width';
  stepLayers: number;
  samples: number;
  seqLen: number;
  recovery?: EstimateRecovery | undefined;
}

export interface EstimateRecovery {
  kind: 'full' | 'lora';
  loss: 'ce' | 'kd';
  batch: number;
  seqLen: number;
  /** Steps per candidate and of the final run; with seconds budgets, those seconds instead. */
  candidateSteps: number;
  finalSteps: number;
  candidateSeconds?: number | undefined;
  finalSeconds?: number | undefined;
  loraRank: number;
  /** Tokens sampled from the model for the recovery text before MoP starts (0: none). */
  sampledTokens?: number | undefined;
}

/** Step times measured on the model's shape (estimate-timing.ts), at the input model's size. */
export interface MeasuredStepTimes {
  /** One training step of `batch` rows (teacher pass included with kd), seconds. */
  trainStepSeconds: number;
  /** Building a training run's graph and sessions, seconds (once per recovery run). */
  recoveryStartSeconds: number;
  /** One calibration pass over samples × seqLen tokens on a warm session, seconds. */
  scoringPassSeconds: number;
  /** The same pass with importance taps (the parent pass of every step), seconds. */
  tapsPassSeconds: number;
  /** Building a scoring session and its first pass's extra time, seconds. */
  scoringOpenSeconds: number;
  /** Sampling one token of recovery text (batched decode as the sampler runs it), seconds; absent when nothing is sampled. */
  sampleTokenSeconds?: number;
}

export interface MemoryEstimate {
  peakBytes: number;
  parts: { weights: number; training: number; activations: number; teacher: number };
}

/** Seconds of a prune: in all, and its candidates' recovery and scoring, the final recovery, the other passes, sampling recovery text. */
export interface EstimateSeconds {
  total: number;
  candidates: number;
  final: number;
  scoring: number;
  /** Sampling recovery text from the model (none when a model store already holds the sample). */
  sampling: number;
}

/** The cost along one path MoP's steps can take (PlannedPath). */
export interface PathEstimate {
  path: PlannedPath['name'];
  steps: number;
  candidates: number;
  trainingTokens: number;
  seconds?: EstimateSeconds;
}

export interface PruneEstimate {
  parameters: number;
  /**
   * MoP steps and candidates scored (each fine-tuned first with candidate recovery), training
   * tokens and seconds: the mean over `paths` (which MoP takes depends on the scores).
   */
  steps: number;
  candidates: number;
  trainingTokens: number;
  memory: MemoryEstimate;
  paths: PathEstimate[];
  /** Present when step times were measured. */
  seconds?: EstimateSeconds;
  measured?: MeasuredStepTimes;
}

/** Bytes of the teacher's cached log-probabilities (recover()'s default cap). */
const TEACHER_CACHE_BYTES = 256 * 2 ** 20;

/**
 * One way MoP's steps can go. Each step removes about `stepLayers` layers' worth of what is left;
 * which candidate wins is only known from the scores, and it sets how many steps there are:
 *   - depth-first: every step takes whole layers, so the step's budget stays one layer of the
 *     input; whole steps, then a trim step for what is left past the tolerance;
 *   - width-first: every step narrows the layers, so each budget is a share of a smaller model
 *     and the remainder shrinks geometrically: more steps for the same target.
 * A trim step (what no whole layer fits) has only the width candidate.
 */
export interface PlannedPath {
  name: 'depth-first' | 'width-first';
  steps: number;
  /** Whether the last step is a trim (MoP: one candidate in it, not two). */
  trim: boolean;
}

/** The paths a prune's steps can take: both for MoP, the one a baseline strategy takes. */
export function plannedPaths(spec: ModelSpec, r: Pick<EstimateRecipe, 'target' | 'stepLayers' | 'strategy'>): PlannedPath[] {
  const layers = spec.layers.filter((l) => l.heads > 0 || l.ffn > 0).length;
  const share = Math.min(1, r.stepLayers / layers);
  // Whole steps to the target; a remainder within the tolerance needs no trim step.
  const whole = r.target / share;
  const full = Math.floor(whole + 1e-9);
  const depthTrim = (whole - full) * share > TARGET_TOLERANCE;
  const depth: PlannedPath = { name: 'depth-first', steps: Math.max(1, full + (depthTrim ? 1 : 0)), trim: depthTrim || full === 0 };
  // Left after k width steps: (1 − share)^k of the blocks; done within the tolerance.
  const widthSteps = share >= 1 ? 1 : Math.max(1, Math.ceil(Math.log(1 - r.target + TARGET_TOLERANCE) / Math.log(1 - share) - 1e-9));
  const width: PlannedPath = { name: 'width-first', steps: widthSteps, trim: 1 - Math.pow(1 - share, widthSteps) - r.target > TARGET_TOLERANCE };
  if (r.strategy === 'depth') return [depth];
  if (r.strategy === 'width') return [width];
  return depth.steps === width.steps && depth.trim === width.trim ? [depth] : [depth, width];
}

/** Candidates over a path: two a step for MoP, one in a trim step; one a step for the baselines. */
export function plannedCandidates(path: PlannedPath, r: Pick<EstimateRecipe, 'strategy'>): number {
  return r.strategy === 'mop' ? 2 * path.steps - (path.trim ? 1 : 0) : path.steps;
}

/**
 * Peak memory of a prune: the input weights, the current and candidate copies, a scoring session;
 * with recovery the trained weights and their gradients, AdamW's two moments and the last good
 * copy (full), or the frozen weights in the session (LoRA), the teacher session and cache (kd),
 * and the activations of one training run.
 */
export function memoryEstimate(spec: ModelSpec, r: Pick<EstimateRecipe, 'recovery' | 'samples' | 'seqLen'>, rowsPerRun = 1): MemoryEstimate {
  const P = parameterCounts(spec).total;
  const f = 4;
  const weights = 4 * P * f;
  const rec = r.recovery;
  const layers = spec.layers.length;
  const widest = Math.max(...spec.layers.map((l) => l.ffn), 0);
  const heads = Math.max(...spec.layers.map((l) => l.heads), 0);
  const scoringActivations = r.samples * r.seqLen * (spec.hidden * 8 + widest * 3 + spec.vocabSize * 2) * f;
  if (!rec) return { peakBytes: weights + scoringActivations, parts: { weights, training: 0, activations: scoringActivations, teacher: 0 } };
  const T = rec.seqLen;
  const trainable = rec.kind === 'full' ? P : loraParameters(spec, rec.loraRank);
  // Trained values, gradients (ours and the session's output), two AdamW moments, the last good copy; LoRA's frozen weights sit in the session.
  const training = (rec.kind === 'full' ? 6 * trainable : 6 * trainable + P) * f;
  const perRow = T * (layers * (spec.hidden * 14 + widest * 5 + heads * T * 2) + spec.vocabSize * 4) * f;
  const activations = Math.max(scoringActivations, Math.min(rec.batch, rowsPerRun) * perRow);
  const teacher = rec.loss === 'kd' ? P * f + TEACHER_CACHE_BYTES + Math.min(rec.batch, rowsPerRun) * T * spec.vocabSize * f : 0;
  return { peakBytes: weights + training + activations + teacher, parts: { weights, training, activations, teacher } };
}

function loraParameters(spec: ModelSpec, rank: number): number {
  return loraSites(spec, loraTargets).reduce((n, s) => n + rank * (s.in + s.out), 0);
}

/** Planned seconds of each MoP step (scoring and candidates), of the final recovery, and of the passes outside steps. */
export interface PlannedSchedule {
  /** Per MoP step: its passes on the current session, and its candidates' recovery and scoring. */
  steps: { scoring: number; candidates: number }[];
  final: number;
  /** The first session and the last pass at the target. */
  other: number;
}

/** Seconds of one planned step. */
export const stepTotal = (s: { scoring: number; candidates: number }): number => s.scoring + s.candidates;

/** Recovery steps a phase runs: its step budget, or a seconds budget in measured steps. */
function phaseSteps(rec: EstimateRecovery | undefined, phase: 'candidate' | 'final', stepSeconds: number | undefined): number {
  if (!rec) return 0;
  const seconds = phase === 'candidate' ? rec.candidateSeconds : rec.finalSeconds;
  if (seconds !== undefined) return stepSeconds && stepSeconds > 0 ? Math.ceil(seconds / stepSeconds) : 0;
  return phase === 'candidate' ? rec.candidateSteps : rec.finalSteps;
}

/**
 * The time model: training and scoring time scale with the parameters of the model as it shrinks
 * (a candidate at step k of S is about (k − ½)/S of the way to the target). Each step: the parent
 * pass with taps and one masked pass per candidate on the current session; with candidate
 * recovery each candidate's training run (its start, its steps), a session of its own and a pass,
 * and the winner's new session. Then the final pass, the final recovery and its scoring.
 */
export function plannedSchedule(spec: ModelSpec, r: EstimateRecipe, m: MeasuredStepTimes, path: PlannedPath = plannedPaths(spec, r)[0]!): PlannedSchedule {
  const counts = parameterCounts(spec);
  const S = path.steps;
  const branches = r.strategy === 'mop' ? 2 : 1;
  const rec = r.recovery;
  const candidateSteps = phaseSteps(rec, 'candidate', m.trainStepSeconds);
  const finalSteps = phaseSteps(rec, 'final', m.trainStepSeconds);
  const size = (x: number) => (counts.embeddings + counts.blocks * (1 - r.target * x)) / counts.total;
  const steps: PlannedSchedule['steps'] = [];
  for (let k = 1; k <= S; k++) {
    const s = size((k - 0.5) / S);
    const n = k === S ? plannedCandidates(path, r) - (S - 1) * branches : branches;
    const scoring = (m.tapsPassSeconds + n * m.scoringPassSeconds) * size((k - 1) / S);
    let candidates = 0;
    if (rec && candidateSteps > 0) {
      const train = rec.candidateSeconds ?? candidateSteps * m.trainStepSeconds * s;
      candidates = n * (train + m.recoveryStartSeconds * s + (m.scoringOpenSeconds + m.scoringPassSeconds) * s) + m.scoringOpenSeconds * s;
    }
    steps.push({ scoring, candidates });
  }
  const last = size(1);
  const final = rec && finalSteps > 0 ? (rec.finalSeconds ?? finalSteps * m.trainStepSeconds * last) + (m.recoveryStartSeconds + m.scoringOpenSeconds + m.scoringPassSeconds) * last : 0;
  return { steps, final, other: m.scoringOpenSeconds + m.tapsPassSeconds * last };
}

/** Candidates, tokens and memory; with `measured`, the wall time (plannedSchedule): each the mean over the paths MoP can take. */
export function estimatePrune(spec: ModelSpec, r: EstimateRecipe, measured?: MeasuredStepTimes, rowsPerRun = 1): PruneEstimate {
  const rec = r.recovery;
  const perStepTokens = rec ? rec.batch * rec.seqLen : 0;
  const paths: PathEstimate[] = plannedPaths(spec, r).map((path) => {
    const candidates = plannedCandidates(path, r);
    const trainingTokens = (candidates * phaseSteps(rec, 'candidate', measured?.trainStepSeconds) + phaseSteps(rec, 'final', measured?.trainStepSeconds)) * perStepTokens;
    const out: PathEstimate = { path: path.name, steps: path.steps, candidates, trainingTokens };
    if (!measured) return out;
    const plan = plannedSchedule(spec, r, measured, path);
    const scoring = plan.other + plan.steps.reduce((n, s) => n + s.scoring, 0);
    const candidateSeconds = plan.steps.reduce((n, s) => n + s.candidates, 0);
    const sampling = (rec?.sampledTokens ?? 0) * (measured.sampleTokenSeconds ?? 0);
    return { ...out, seconds: { total: sampling + scoring + candidateSeconds + plan.final, candidates: candidateSeconds, final: plan.final, scoring, sampling } };
  });
  const mean = (f: (p: PathEstimate) => number) => paths.reduce((n, p) => n + f(p), 0) / paths.length;
  const out: PruneEstimate = { parameters: parameterCounts(spec).total, steps: mean((p) => p.steps), candidates: mean((p) => p.candidates), trainingTokens: mean((p) => p.trainingTokens), memory: memoryEstimate(spec, r, rowsPerRun), paths };
  if (!measured) return out;
  const seconds = (k: keyof EstimateSeconds) => mean((p) => p.seconds![k]);
  return { ...out, seconds: { total: seconds('total'), candidates: seconds('candidates'), final: seconds('final'), scoring: seconds('scoring'), sampling: seconds('sampling') }, measured };
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

/**
 * Refuse a recipe whose peak memory cannot fit in `availableBytes`, with the numbers and the
 * options that would fit (LoRA, a smaller recovery batch, no recovery).
 */
export function checkMemoryFits(spec: ModelSpec, r: EstimateRecipe, availableBytes: number, rowsPerRun = 1): void {
  const m = memoryEstimate(spec, r, rowsPerRun);
  if (m.peakBytes <= availableBytes) return;
  const p = m.parts;
  const fits: string[] = [];
  const rec = r.recovery;
  if (rec?.kind === 'full') {
    const lora = memoryEstimate(spec, { ...r, recovery: { ...rec, kind: 'lora' } }, rowsPerRun).peakBytes;
    if (lora <= availableBytes) fits.push(`--recovery lora (about ${gib(lora)})`);
  }
  if (rec && rec.loss === 'kd') {
    const ce = memoryEstimate(spec, { ...r, recovery: { ...rec, kind: fits.length > 0 ? 'lora' : rec.kind, loss: 'ce' } }, rowsPerRun).peakBytes;
    if (ce <= availableBytes) fits.push(`${fits.length > 0 ? '--recovery lora ' : ''}--recovery-loss ce (no teacher in memory: about ${gib(ce)})`);
  }
  if (rec) {
    const none = memoryEstimate(spec, { ...r, recovery: undefined }).peakBytes;
    if (none <= availableBytes) fits.push(`--recovery none (about ${gib(none)})`);
  }
  throw new MopInputError(
    `this prune needs about ${gib(m.peakBytes)} of memory at its peak (weights and copies ${gib(p.weights)}, training state ${gib(p.training)}, activations ${gib(p.activations)}, distillation teacher ${gib(p.teacher)}) and ${gib(availableBytes)} is available; ` +
      (fits.length > 0 ? `what fits: ${fits.join(', or ')}` : 'no recipe of this model fits: use a machine with more memory'),
  );
}
