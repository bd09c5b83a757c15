/** The main thread's side of fault-engine-worker.ts: which module to start, and how to trigger a fault. */
import { BroadcastChannel } from 'node:worker_threads';
import type { EngineFault } from './fault-engine-worker.ts';
import { FAULT_CHANNEL } from './fault-engine-worker.ts';

/** Pass as `StartOptions.engineWorker`. */
export const faultEngineWorker = new URL('./fault-engine-worker.ts', import.meta.url);

/** Tell every engine worker of `fault.variant` to stall or crash (the others ignore it). */
export function injectEngineFault(fault: EngineFault): void {
  const channel = new BroadcastChannel(FAULT_CHANNEL);
  channel.postMessage(fault);
  channel.close();
}
