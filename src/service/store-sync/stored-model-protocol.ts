/**
 * Messages of the stored-model worker: reading a stored checkpoint (or hashing a model's weights)
 * is CPU and memory work on hundreds of megabytes, so it runs off the thread that answers HTTP.
 */
import type { PruneReport } from '../../mop/report.ts';
import type { LoadedModel } from '../../runtime/model/loaded-model.ts';
import type { ModelSpec } from '../../runtime/model/spec.ts';
import type { Weights } from '../../runtime/model/tensor.ts';
import type { WireError } from '../engine/engine-protocol.ts';

/** The worker's `workerData`: one task, then it ends. */
export type StoredModelTask =
  /** Read the checkpoint directory `dir` (weights into shared memory) and its report.json. */
  | { task: 'load'; dir: string }
  /** SHA-256 of a model's spec and weights (digestWeights). */
  | { task: 'digest'; spec: ModelSpec; weights: Weights };

export type FromStoredModelWorker =
  | { type: 'loaded'; model: LoadedModel; report: PruneReport | null }
  | { type: 'digested'; digest: string }
  | { type: 'failed'; error: WireError };
