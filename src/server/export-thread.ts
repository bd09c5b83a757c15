/**
 * A model export (GGUF conversion and quantization) runs in its own worker thread, never on the
 * HTTP thread: the variant's weights go to it in shared memory (not copied), the file comes back on
 * disk. The wait is bounded; a thread that overruns it, or whose client left, is terminated (it runs
 * no native code, so terminating it is safe) and its partial file removed.
 */
import type { ExportDtype, ExportFormat } from '../mop/export.ts';
import type { LoadedModel } from '../runtime/model/loaded-model.ts';
import { siblingModule, startWorkerThread } from '../runtime/threads/worker-thread.ts';

export interface ExportTask {
  model: Pick<LoadedModel, 'spec' | 'weights' | 'tokenizer' | 'chatTemplate'>;
  out: string;
  format: ExportFormat;
  dtype: ExportDtype;
  name: string;
}

export type FromExportWorker = { type: 'done' } | { type: 'failed'; error: { name: string; message: string } };

/** Why an export ended without a file. */
export class ExportFailedError extends Error {
  override name = 'ExportFailedError';
  constructor(
    message: string,
    /** The error's name in the thread (ModelFormatError: the model cannot be written as asked), or timeout / aborted / thread. */
    readonly reason: string,
  ) {
    super(message);
  }
}

/** Longest an export may take: a minute, plus a second per 10 MB of weights (the slowest path, Q4_0, runs far faster). */
export function exportTimeoutMs(weightBytes: number): number {
  return 60_000 + weightBytes / 10_000;
}

/** Run `task` in a worker thread; resolves when `task.out` is written. */
export function exportInWorker(task: ExportTask, timeoutMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = startWorkerThread(siblingModule(import.meta.url, 'export-worker'), { workerData: task, name: 'export' });
    worker.unref(); // an export never holds up the process's exit (shutdown does not wait for a download)
    let settled = false;
    const finish = (error?: ExportFailedError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (error) {
        void worker.terminate();
        reject(error);
      } else resolve();
    };
    const timer = setTimeout(() => finish(new ExportFailedError(`the export did not finish within ${Math.round(timeoutMs / 1000)} s`, 'timeout')), timeoutMs);
    const onAbort = () => finish(new ExportFailedError('the client closed the request', 'aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (m: FromExportWorker) => finish(m.type === 'done' ? undefined : new ExportFailedError(m.error.message, m.error.name)));
    worker.once('error', (e) => finish(new ExportFailedError(`the export thread failed: ${e.message}`, 'thread')));
    worker.once('exit', (code) => finish(new ExportFailedError(`the export thread exited with code ${code} before answering`, 'thread')));
  });
}
