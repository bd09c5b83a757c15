/** The stored-model worker thread: one load (verified first) or digest task (see stored-model-protocol.ts). */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { type PruneReport, REPORT_FILE } from '../../mop/report.ts';
import type { LoadedModel } from '../../runtime/model/loaded-model.ts';
import { loadModel } from '../../runtime/model/load.ts';
import { shareWeights } from '../../runtime/model/shared-weights.ts';
import { toWireError } from '../variants/engine-protocol.ts';
import { checkEntryContents, digestWeights } from '../model-store/index.ts';
import type { FromStoredModelWorker, StoredModelTask } from './stored-model-protocol.ts';

const port = parentPort!;
const task = workerData as StoredModelTask;
const post = (m: FromStoredModelWorker) => port.postMessage(m);

try {
  if (task.task === 'digest') {
    post({ type: 'digested', digest: digestWeights(task.spec, task.weights) });
  } else {
    // Verified before it is read: a file swapped or flipped on the shared volume is never served.
    const problem = await checkEntryContents(task.dir, task.record);
    if (problem) post({ type: 'invalid', problem });
    else post({ type: 'loaded', ...(await loadCheckpoint(task.dir)) });
  }
} catch (e) {
  post({ type: 'failed', error: toWireError(e) });
}
port.close();

async function loadCheckpoint(dir: string): Promise<{ model: LoadedModel; report: PruneReport | null }> {
  const model = await loadModel(dir);
  let report: PruneReport | null = null;
  try {
    report = JSON.parse(await fs.readFile(join(dir, REPORT_FILE), 'utf8')) as PruneReport;
  } catch (e) {
    // A checkpoint without a report still serves; a report that is there but unreadable is damage.
    if ((e as { code?: string }).code !== 'ENOENT') throw new Error(`${join(dir, REPORT_FILE)}: ${(e as Error).message}`);
  }
  return { model: { ...model, weights: shareWeights(model.weights) }, report };
}
