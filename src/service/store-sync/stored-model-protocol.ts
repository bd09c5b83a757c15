/**
 * Messages of the stored-model worker: reading a stored checkpoint (or hashing a model's weights)
 * is CPU and memory work on hundreds of megabytes, so it runs off the thread that answers HTTP.
 */
import type { PruneReport } from '../../mop/report.ts';
import type { LoadedModel } from '../../runtime/model/loaded-model.ts';
import type { ModelSpec } from '../../runtime/model/spec.ts';
import type { Weights } from '../../runtime/model/tensor.ts';
import type { WireError } from '../variants/engine-protocol.ts';
import type { EntryProblem, EntryRecord } from '../model-store/index.ts';

/** The worker's `workerData`: one task, then it ends. */
export type StoredModelTask =
  /**
   * Check the store entry at `dir` against `record` (its entry.json as the main thread read it:
   * every file's SHA-256, nothing unlisted), then read the checkpoint (weights into shared memory)
   * and its report.json.
   */
  | { task: 'load'; dir: string; record: Pick<EntryRecord, 'key' | 'files'> }
  /** SHA-256 of a model's spec and weights (digestWeights). */
  | { task: 'digest'; spec: ModelSpec; weights: Weights };

export type FromStoredModelWorker =
  | { type: 'loaded'; model: LoadedModel; report: PruneReport | null }
  | { type: 'digested'; digest: string }
  /** The entry's files are not what its record says: nothing was loaded. */
  | { type: 'invalid'; problem: EntryProblem }
  | { type: 'failed'; error: WireError };
