/**
 * The main thread's side of the stored-model worker: load a stored checkpoint, or digest the dense
 * model's weights, without blocking the event loop (a 400 MB model takes a noticeable fraction of a
 * second to hash and longer to read).
 */
import type { PruneReport } from '../../mop/report.ts';
import type { LoadedModel } from '../../runtime/model/loaded-model.ts';
import type { ModelSpec } from '../../runtime/model/spec.ts';
import type { Weights } from '../../runtime/model/tensor.ts';
import { EntryInvalidError, type HexDigest, type StoredEntry } from '../model-store/index.ts';
import { siblingModule, startWorkerThread } from '../../runtime/threads/worker-thread.ts';
import type { FromStoredModelWorker, StoredModelTask } from './stored-model-protocol.ts';

export interface StoredModel {
  model: LoadedModel;
  /** The prune report stored with the checkpoint; null when there is none. */
  report: PruneReport | null;
}

/**
 * Verify a store entry's files against its record (SHA-256 of each, nothing unlisted) and read its
 * checkpoint, both in a worker; the weights arrive in shared memory. EntryInvalidError (naming the
 * file) when the contents are not what was written.
 */
export async function loadStoredModel(entry: StoredEntry): Promise<StoredModel> {
  const m = await runTask({ task: 'load', dir: entry.dir, record: { key: entry.record.key, files: entry.record.files } });
  if (m.type === 'invalid') throw new EntryInvalidError(entry.key, m.problem.file, m.problem.reason);
  if (m.type !== 'loaded') throw new Error('stored-model worker answered out of turn');
  return { model: m.model, report: m.report };
}

/** digestWeights(spec, weights) in a worker (shared weights are not copied to it). */
export async function digestInWorker(spec: ModelSpec, weights: Weights): Promise<HexDigest> {
  const m = await runTask({ task: 'digest', spec, weights });
  if (m.type !== 'digested') throw new Error('stored-model worker answered out of turn');
  return m.digest;
}

function runTask(task: StoredModelTask): Promise<Exclude<FromStoredModelWorker, { type: 'failed' }>> {
  return new Promise((resolve, reject) => {
    const worker = startWorkerThread(siblingModule(import.meta.url, 'stored-model-worker'), { workerData: task, name: `store-${task.task}` });
    let answered = false;
    worker.once('message', (m: FromStoredModelWorker) => {
      answered = true;
      if (m.type === 'failed') reject(Object.assign(new Error(m.error.message), { name: m.error.name }));
      else resolve(m);
    });
    worker.once('error', (e) => reject(new Error(`stored-model worker failed: ${e.message}`)));
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`stored-model worker exited with code ${code} before answering`));
    });
  });
}
