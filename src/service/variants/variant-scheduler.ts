/**
 * A served variant's scheduler, as the HTTP layer submits to it: every call goes to the engine
 * that serves the variant now (a restart replaces it), and a submission is refused while the
 * variant is not serving (503, or 503 `engine_stalled`), so nothing waits on a dead or stuck engine.
 */
import type { RequestHandle, Scheduler, SchedulerStats } from '../../runtime/engine/scheduler-types.ts';
import type { GenerationRequest } from '../../runtime/engine/sequence.ts';
import type { EngineClient } from './engine-client.ts';

export interface SchedulerOwner {
  /** The engine client serving the variant at this moment. */
  currentEngine(): EngineClient;
  /** Throws VariantUnavailableError / EngineStalledError unless the variant is serving. */
  refuseUnlessServing(): void;
}

export class VariantScheduler implements Scheduler {
  constructor(private readonly owner: SchedulerOwner) {}

  submit(request: GenerationRequest): RequestHandle {
    this.owner.refuseUnlessServing();
    return this.owner.currentEngine().submit(request);
  }

  stats(): SchedulerStats {
    return this.owner.currentEngine().stats();
  }

  drain(graceMs: number): Promise<void> {
    return this.owner.currentEngine().drain(graceMs);
  }
}
