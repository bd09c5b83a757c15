/**
 * Messages between the main thread and a prune worker. The worker gets the source model (weights
 * in shared memory) and the recipe, and sends back progress and then the pruned model, its weights
 * again in shared memory so the new engine worker and later prunes use them without a copy.
 */
import type { CalibrationDescription } from '../../mop/calibration.ts';
import type { MopProgress } from '../../mop/mop.ts';
import type { PruneReport } from '../../mop/report.ts';
import type { DeviceName, ExecutionTarget } from '../../runtime/device/device.ts';
import type { ModelSpec } from '../../runtime/model/spec.ts';
import type { Weights } from '../../runtime/model/tensor.ts';
import type { WireError } from '../variants/engine-protocol.ts';
import type { EntryRecipe, HexDigest } from '../model-store/index.ts';
import type { PruneRun } from './run-prune.ts';
import type { PruneCostEstimate } from './prune-estimate.ts';

/** The worker's `workerData`. */
export interface PruneWorkerInit {
  model: PruneRun['model'];
  recipe: PruneRun['recipe'];
  referenceBlocks?: number;
  threads?: number;
  device?: DeviceName;
  /** What the result will be served on (a latency budget is measured in it). */
  servingTarget?: ExecutionTarget;
  /** Nice value of the prune thread (and the ONNX Runtime threads it starts): 0 = as serving. */
  nice?: number;
  /** Export the result into the model store under `key` before answering (the job fails if that fails). */
  store?: PruneStoreTarget;
  /** Measure and answer the recipe's cost (a dry run) instead of pruning. */
  estimateOnly?: boolean;
  /** With estimateOnly: the store that may hold recovery text sampled from this source (then the estimate counts no sampling); only with the bundled calibration text, which the check reads. */
  selfTextStore?: { root: string; sourceDigest: HexDigest };
}

export interface PruneStoreTarget {
  root: string;
  key: HexDigest;
  sourceDigest: HexDigest;
  recipe: EntryRecipe;
  /** The source's chat template, copied into the checkpoint. */
  chatTemplate: string | undefined;
}

export type ToPruneWorker = { type: 'cancel' };

export type FromPruneWorker =
  | { type: 'calibrated'; calibration: CalibrationDescription }
  | { type: 'progress'; progress: MopProgress }
  | { type: 'done'; spec: ModelSpec; weights: Weights; report: PruneReport; stored: { key: HexDigest; outcome: 'written' | 'hit' } | null }
  | { type: 'estimate'; estimate: PruneCostEstimate }
  | { type: 'failed'; error: WireError; cancelled: boolean };
