/**
 * An engine worker with faults that can be switched on from outside: the real engine worker
 * (src/service/variants/engine-worker.ts) plus a listener on a BroadcastChannel. A stall blocks the
 * whole thread (Atomics.wait), exactly as a hung ONNX Runtime call would: no step ends, no
 * message is read, no heartbeat leaves. A crash ends the thread between two steps. A step failure
 * makes the next decode steps throw, as an ONNX Runtime error would.
 *
 * Used by bench:faults and by the fault tests: `startServer(config, { engineWorker: faultEngineWorker })`,
 * then `injectEngineFault({ variant, action: 'stall', ms })` from the main thread.
 */
import { BroadcastChannel, workerData } from 'node:worker_threads';
import type { ModelSession as ModelSessionType } from '../../src/runtime/engine/ort-decoder-session.ts';

export const FAULT_CHANNEL = 'mop-engine-faults';

export type EngineFault =
  | { variant: string; action: 'stall'; ms: number }
  | { variant: string; action: 'crash' }
  /** The next `count` decode steps throw, as an ONNX Runtime error would. */
  | { variant: string; action: 'fail-steps'; count: number };

const variant = (workerData as { variant?: string } | undefined)?.variant;
if (variant !== undefined) {
  let failSteps = 0;
  const { ModelSession } = await import('../../src/runtime/engine/ort-decoder-session.ts');
  const decode = ModelSession.prototype.decode;
  ModelSession.prototype.decode = function (this: ModelSessionType, ...args: Parameters<typeof decode>) {
    if (failSteps > 0) {
      failSteps--;
      return Promise.reject(new Error('injected step failure'));
    }
    return decode.apply(this, args);
  };
  const channel = new BroadcastChannel(FAULT_CHANNEL);
  channel.onmessage = (e) => {
    const fault = (e as { data: EngineFault }).data;
    if (fault.variant !== variant) return;
    if (fault.action === 'crash') process.exit(1);
    else if (fault.action === 'fail-steps') failSteps += fault.count;
    else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, fault.ms);
  };
  // Never keeps the thread alive on its own.
  channel.unref();
  await import('../../src/service/variants/engine-worker.ts');
}
