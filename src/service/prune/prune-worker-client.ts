/**
 * The main thread's side of one prune worker: start it, learn when its inputs proved good
 * (calibration read), follow its progress, get the pruned model, or stop it.
 */
import type { CalibrationDescription } from '../../mop/calibration.ts';
import { MopInputError } from '../../mop/errors.ts';
import type { MopProgress } from '../../mop/mop.ts';
import type { PruneReport } from '../../mop/report.ts';
import type { ModelSpec } from '../../runtime/model/spec.ts';
import type { Weights } from '../../runtime/model/tensor.ts';
import { siblingModule, startWorkerThread } from '../../runtime/threads/worker-thread.ts';
import type { FromPruneWorker, PruneWorkerInit, ToPruneWorker } from './prune-protocol.ts';
import type { PruneCostEstimate } from './prune-estimate.ts';

export interface PrunedModel {
  spec: ModelSpec;
  weights: Weights;
  report: PruneReport;
}

export interface PruneWorkerHandle {
  /** Resolves once the calibration text is read and cut; rejects (MopInputError) when the inputs are bad. */
  calibrated: Promise<CalibrationDescription>;
  /** The pruned model; rejects with the worker's error, or an AbortError after cancel(). */
  result: Promise<PrunedModel>;
  /**
   * Stop: the job ends now (result rejects with an AbortError); the thread stops at the end of the
   * forward pass it is in (MoP checks the signal between passes). It is asked, not terminated:
   * terminating a thread inside an ONNX Runtime call aborts the whole process.
   */
  cancel(): void;
  /** Resolves when the thread has ended (shutdown waits for it). */
  exited: Promise<void>;
  /** Stop keeping the process alive (shutdown gave up waiting): the thread ends with the process, never terminated. */
  detach(): void;
}

/** `heapMb`: the worker's JavaScript heap limit; past it the worker ends (the job fails), not the process. */
export function startPruneWorker(init: PruneWorkerInit, onProgress: (p: MopProgress) => void, limits: { heapMb?: number } = {}): PruneWorkerHandle {
  const worker = startWorkerThread(siblingModule(import.meta.url, 'prune-worker'), {
    workerData: init,
    name: 'prune',
    ...(limits.heapMb !== undefined && { resourceLimits: { maxOldGenerationSizeMb: limits.heapMb } }),
  });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  let settled = false;
  let resolveCalibrated!: (c: CalibrationDescription) => void;
  let rejectCalibrated!: (e: unknown) => void;
  let resolveResult!: (m: PrunedModel) => void;
  let rejectResult!: (e: unknown) => void;
  const calibrated = new Promise<CalibrationDescription>((res, rej) => ((resolveCalibrated = res), (rejectCalibrated = rej)));
  const result = new Promise<PrunedModel>((res, rej) => ((resolveResult = res), (rejectResult = rej)));
  // Whoever awaits only one of the two must not see the other as an unhandled rejection.
  calibrated.catch(() => undefined);
  result.catch(() => undefined);
  const fail = (e: unknown) => {
    if (settled) return;
    settled = true;
    rejectCalibrated(e);
    rejectResult(e);
  };
  worker.on('message', (m: FromPruneWorker) => {
    switch (m.type) {
      case 'calibrated':
        resolveCalibrated(m.calibration);
        break;
      case 'progress':
        if (!settled) onProgress(m.progress);
        break;
      case 'done':
        settled = true;
        resolveResult({ spec: m.spec, weights: m.weights, report: m.report });
        break;
      case 'failed': {
        const err = m.cancelled ? new DOMException('cancelled', 'AbortError') : workerError(m.error);
        fail(err);
        break;
      }
    }
  });
  worker.on('error', (e) => fail(new Error(`prune worker failed: ${e.message}`)));
  worker.on('exit', (code) => fail(new Error(`prune worker exited with code ${code} before finishing`)));
  return {
    calibrated,
    result,
    cancel: () => {
      fail(new DOMException('cancelled', 'AbortError'));
      worker.postMessage({ type: 'cancel' } satisfies ToPruneWorker);
    },
    exited,
    detach: () => worker.unref(),
  };
}

/**
 * A dry run in a prune worker: the recipe's cost measured on the model's shape (seconds to a
 * minute of training steps and scoring passes), off the thread that answers HTTP.
 */
export function estimateInWorker(init: PruneWorkerInit, limits: { heapMb?: number } = {}): Promise<PruneCostEstimate> {
  const worker = startWorkerThread(siblingModule(import.meta.url, 'prune-worker'), {
    workerData: { ...init, estimateOnly: true } satisfies PruneWorkerInit,
    name: 'prune-estimate',
    ...(limits.heapMb !== undefined && { resourceLimits: { maxOldGenerationSizeMb: limits.heapMb } }),
  });
  return new Promise<PruneCostEstimate>((resolve, reject) => {
    worker.on('message', (m: FromPruneWorker) => {
      if (m.type === 'estimate') resolve(m.estimate);
      else if (m.type === 'failed') reject(workerError(m.error));
    });
    worker.on('error', (e) => reject(new Error(`prune estimate worker failed: ${e.message}`)));
    worker.on('exit', (code) => reject(new Error(`prune estimate worker exited with code ${code} before answering`)));
  });
}

/** A worker's error on this side: bad input stays a MopInputError (a 400), anything else keeps its name. */
function workerError(e: { name: string; message: string }): Error {
  return e.name === 'MopInputError' ? new MopInputError(e.message) : Object.assign(new Error(e.message), { name: e.name });
}
