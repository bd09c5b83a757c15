import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { LayerSpec } from '../runtime/model/spec.ts';
import type { CalibrationDescription } from './calibration.ts';
import type { RemovedStructures } from './candidates.ts';
import type { DepthRule } from './depth-rule.ts';
import type { LatencyProfile } from './latency-profile.ts';
import type { RecoveryRunRecord } from './mop-recovery.ts';
import type { RecoveryTextDescription } from './recovery-data.ts';
import type { RecoveryOptions } from '../runtime/train/recover.ts';
import type { SelectionCriterion } from './selection.ts';

/**
 * The JSON record of one pruning run: the settings, every step's candidates with their scores and
 * the choice, and the final per-layer shape. Written as report.json beside the pruned checkpoint.
 * Ratios are 1 − blocks / reference blocks (transformer-block parameters; embeddings, final norm
 * and LM head are reported separately and never pruned).
 */
export const REPORT_FILE = 'report.json';

export type Strategy = 'mop' | 'depth' | 'width';

export interface ParamCounts {
  blocks: number;
  embeddings: number;
  total: number;
}

export interface CandidateRecord {
  branch: 'depth' | 'width';
  /** Block parameters it removes from the parent. */
  removedParams: number;
  blocks: number;
  ratio: number;
  /** Selection-criterion score on the calibration set (lower is better). */
  score: number;
  /** (score − parent score) per 1000 removed parameters: what selection compares. */
  costPer1kParams: number;
  removed: RemovedStructures;
  /** With per-candidate recovery: the score as cut (before), `score` is after; and the run itself. */
  recovery?: RecoveryRunRecord & { scoreBefore: number };
}

export interface StepRecord {
  step: number;
  /** The step's parameter budget (the candidates are compared at the depth candidate's size). */
  budget: number;
  parent: { blocks: number; ratio: number; score: number };
  /** One candidate per branch tried (MoP: depth and width; baselines: their own branch). */
  candidates: CandidateRecord[];
  chosen: 'depth' | 'width';
  /**
   * Block parameters the step removed: the chosen candidate's, or less when a width branch won a
   * comparison larger than the step budget and committed only the budget.
   */
  committedParams: number;
  /** After the step. */
  blocks: number;
  ratio: number;
  wallMs: number;
}

export interface PruneReport {
  version: 1;
  strategy: Strategy;
  criterion: SelectionCriterion;
  importance: string;
  target: number;
  seed: number;
  /**
   * widthMultiple: set when above 1. uniform: set when every kept layer was kept the same shape. budget 'latency': the target, the steps' budgets, blocks,
   * ratios and removed amounts are in predicted decode-step time (µs), not parameters; result.ratio
   * stays the parameter ratio and result.latency holds the time ratios.
   */
  options: { stepLayers: number; depthUnit: string; widthSplit: string; widthNormalize: string; widthMultiple?: number; uniform?: true; depthRule?: DepthRule; budget?: 'latency' };
  calibration: CalibrationDescription;
  model: { path?: string; layers: LayerSpec[]; params: ParamCounts };
  /** Block parameters the ratio is measured against (the dense model's, also when pruning a pruned model). */
  referenceBlocks: number;
  steps: StepRecord[];
  result: {
    layers: LayerSpec[];
    /** For each output layer, the input model's layer it came from. */
    sourceLayers: number[];
    /** Kept structures per input layer, in input-model indices. */
    kept: { layer: number; kvGroups: number[]; neurons: number[] }[];
    params: ParamCounts;
    ratio: number;
    steps: { depth: number; width: number };
    /** Calibration score of the final model under the selection criterion (after the final recovery, if any). */
    finalScore: number;
    /** The same before the final recovery (only when one ran). */
    finalScoreBeforeRecovery?: number;
    /**
     * Latency-aware runs: the share of the blocks' step time removed (what the target counts), the
     * predicted whole-step ratio pruned / input (LM head and overhead included), and the profile.
     */
    latency?: { blockRatio: number; stepRatio: number; profile: LatencyProfile };
  };
  /** Absent when no recovery ran. */
  recovery?: PruneRecoveryReport;
  wallMs: number;
}

export interface PruneRecoveryReport {
  /** The resolved recipe of every run (steps excepted). */
  recipe: Omit<RecoveryOptions, 'steps'>;
  /** Step budgets; with a time limit (seconds of training per run) that limit was the budget instead. */
  candidateSteps: number;
  finalSteps: number;
  candidateTimeLimit?: number;
  finalTimeLimit?: number;
  data?: RecoveryTextDescription;
  /** Wall time of all candidate recoveries, of the final one, and their sum (graph and session builds included). */
  candidateSeconds: number;
  finalSeconds: number;
  seconds: number;
  final?: RecoveryRunRecord;
}

export async function writeReport(dir: string, report: PruneReport): Promise<string> {
  const path = join(dir, REPORT_FILE);
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path, JSON.stringify(report, null, 2) + '\n');
  return path;
}

/** The reference block count stored in a pruned directory's report.json, if there is one. */
export async function readReferenceBlocks(dir: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await fs.readFile(join(dir, REPORT_FILE), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const r = JSON.parse(text) as { referenceBlocks?: unknown };
    return typeof r.referenceBlocks === 'number' && r.referenceBlocks > 0 ? r.referenceBlocks : undefined;
  } catch {
    return undefined;
  }
}

/** One line for logs. */
export function summarizeReport(r: PruneReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lat = r.result.latency;
  const reached = lat
    ? `reached ${pct(lat.blockRatio)} of the blocks' predicted step time (predicted step ratio ${lat.stepRatio.toFixed(3)}; ${pct(r.result.ratio)} of block params) `
    : `reached ${pct(r.result.ratio)} `;
  return (
    `${r.strategy} pruning to ${pct(r.target)}${lat ? ' of step time' : ''}: ${reached}` +
    `(block params ${r.referenceBlocks.toLocaleString('en-US')} → ${r.result.params.blocks.toLocaleString('en-US')}; ` +
    `${r.result.layers.length} layers) in ${r.steps.length} steps (${r.result.steps.depth} depth, ${r.result.steps.width} width), ` +
    `calibration ${r.criterion} ${r.result.finalScore.toFixed(4)}, ${(r.wallMs / 1000).toFixed(1)} s` +
    (r.recovery ? `; ${summarizeRecovery(r)}` : '')
  );
}

/** The recovery part of the summary: budget, time, the final run's loss, and any run stopped by a non-finite loss. */
function summarizeRecovery(r: PruneReport): string {
  const rec = r.recovery!;
  const runs = [...r.steps.flatMap((s) => s.candidates.map((c) => c.recovery)), rec.final].filter((x) => x !== undefined);
  const stopped = runs.filter((x) => x.stopped === 'non-finite');
  const final = rec.final ? `, final train loss ${rec.final.trainLossFirst.toFixed(3)} → ${rec.final.trainLossLast.toFixed(3)} at ${Math.round(rec.final.tokensPerSecond)} tok/s` : '';
  const warn = stopped.length ? `; ${stopped.length} recovery run(s) hit a non-finite loss (at step ${stopped.map((x) => x.nonFiniteStep).join(', ')}) and kept their last good weights` : '';
  const per = rec.candidateTimeLimit !== undefined ? `${rec.candidateTimeLimit} s` : `${rec.candidateSteps} steps`;
  const last = rec.finalTimeLimit !== undefined ? `${rec.finalTimeLimit} s` : `${rec.finalSteps}`;
  return `${rec.recipe.kind} recovery (${rec.recipe.loss}, ${per} per candidate, ${last} final) ${rec.seconds.toFixed(1)} s${final}${warn}`;
}
