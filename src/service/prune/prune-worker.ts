/**
 * The prune worker thread: MoP's calibration graph, scoring passes and surgery run here with
 * their own ONNX Runtime thread budget, never on the thread that answers HTTP.
 */
import { niceCurrentThread } from '../threads/thread-priority.ts';
import { parentPort, workerData } from 'node:worker_threads';
import { shareWeights } from '../../runtime/model/shared-weights.ts';
import { writePrunedModel } from '../../mop/export.ts';
import { toWireError } from '../variants/engine-protocol.ts';
import { ModelStore } from '../model-store/index.ts';
import type { FromPruneWorker, PruneWorkerInit, ToPruneWorker } from './prune-protocol.ts';
import { runPrune } from './run-prune.ts';
import { storeSelfTextCache } from './self-text-store.ts';
import { estimatePruneCost } from './prune-estimate.ts';

const port = parentPort!;
const init = workerData as PruneWorkerInit;
const post = (m: FromPruneWorker) => port.postMessage(m);
const ac = new AbortController();
// Before any session exists, so ONNX Runtime's threads inherit it.
if (init.nice !== undefined) niceCurrentThread(init.nice);
port.on('message', (m: ToPruneWorker) => {
  if (m.type === 'cancel') ac.abort();
});

async function prune(): Promise<void> {
  // Text sampled for `--recovery-data self` is kept in the store, under the source's digest.
  const selfTextCache = init.store && storeSelfTextCache(await ModelStore.open(init.store.root, { cleanOnOpen: false }), init.store.sourceDigest);
  const result = await runPrune({
    model: init.model,
    recipe: init.recipe,
    ...(init.referenceBlocks !== undefined && { referenceBlocks: init.referenceBlocks }),
    ...(init.threads !== undefined && { threads: init.threads }),
    ...(init.device !== undefined && { device: init.device }),
    ...(init.servingTarget !== undefined && { servingTarget: init.servingTarget }),
    signal: ac.signal,
    ...(selfTextCache && { selfTextCache }),
    onCalibrated: (calibration) => post({ type: 'calibrated', calibration }),
    onProgress: (progress) => post({ type: 'progress', progress }),
  });
  // Exported here, off the main thread: writing and hashing the checkpoint is heavy. A failed
  // export (full disk, read-only store) fails the job with the store's reason.
  let stored: { key: string; outcome: 'written' | 'hit' } | null = null;
  if (init.store) {
    const target = init.store;
    // This thread's scratch marks are its own: leave cleanup to the main thread's handle.
    const store = await ModelStore.open(target.root, { cleanOnOpen: false });
    const source = { tokenizer: init.model.tokenizer, ...(target.chatTemplate !== undefined && { chatTemplate: target.chatTemplate }) };
    const put = await store.put(target.key, (dir) => writePrunedModel(dir, result.model, source, result.report), { sourceDigest: target.sourceDigest, recipe: target.recipe });
    stored = { key: put.key, outcome: put.outcome };
  }
  post({ type: 'done', spec: result.model.spec, weights: shareWeights(result.model.weights), report: result.report, stored });
}

try {
  if (init.estimateOnly) {
    const selfTextCache = init.selfTextStore && storeSelfTextCache(await ModelStore.open(init.selfTextStore.root, { cleanOnOpen: false }), init.selfTextStore.sourceDigest);
    post({ type: 'estimate', estimate: await estimatePruneCost(init.model, init.recipe, { threads: init.threads, device: init.device, signal: ac.signal, selfTextCache }) });
  }
  else await prune();
} catch (e) {
  post({ type: 'failed', error: toWireError(e), cancelled: ac.signal.aborted });
}
port.close();
