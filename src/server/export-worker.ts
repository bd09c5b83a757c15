/** The export thread of export-thread.ts: one model in (weights in shared memory), one file written, one answer out. */
import { parentPort, workerData } from 'node:worker_threads';
import { exportModel } from '../mop/export.ts';
import type { ExportTask, FromExportWorker } from './export-thread.ts';

const task = workerData as ExportTask;
let answer: FromExportWorker;
try {
  await exportModel(task.model, task.out, { format: task.format, dtype: task.dtype }, task.name);
  answer = { type: 'done' };
} catch (e) {
  answer = { type: 'failed', error: { name: e instanceof Error ? e.name : 'Error', message: e instanceof Error ? e.message : String(e) } };
}
parentPort!.postMessage(answer);
