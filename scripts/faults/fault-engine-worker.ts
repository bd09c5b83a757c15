/**
 * An engine worker with faults that can be switched on from outside: the real engine worker
 * (src/service/engine/engine-worker.ts) plus a listener on a BroadcastChannel. A stall blocks the
 * whole thread (Atomics.wait), exactly as a hung ONNX Runtime call would: no step ends, no
 * message is read, no heartbeat leaves. A crash ends the thread between two steps.
 *
 * Used by bench:faults and by the fault tests: `startServer(config, { engineWorker: faultEngineWorker })`,
 * then `injectEngineFault({ variant, action: 'stall', ms })` from the main thread.
 */
import { BroadcastChannel, workerData } from 'node:worker_threads';

export const FAULT_CHANNEL = 'mop-engine-faults';

export type EngineFault = { variant: string; action: 'stall'; ms: number } | { variant: string; action: 'crash' };

const variant = (workerData as { variant?: string } | undefined)?.variant;
if (variant !== undefined) {
  const channel = new BroadcastChannel(FAULT_CHANNEL);
  channel.onmessage = (e) => {
    const fault = (e as MessageEvent<EngineFault>).data;
    if (fault.variant !== variant) return;
    if (fault.action === 'crash') process.exit(1);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, fault.ms);
  };
  // Never keeps the thread alive on its own.
  channel.unref();
  await import('../../src/service/engine/engine-worker.ts');
}
