import type { PrefixCacheStats } from './prefix-cache.ts';
import type { GenerationEvent, GenerationRequest } from './sequence.ts';

/** A request accepted by the scheduler: its event stream and the moments metrics are made of. */
export interface RequestHandle {
  id: number;
  /** performance.now() when submitted / when it got a batch slot (prefill began). */
  submittedAt: number;
  admittedAt: number | undefined;
  /**
   * Token events then exactly one finish event. Stop consuming early (or abort the request's
   * signal) and the request leaves the batch at the next step, freeing its slot and KV memory.
   */
  events: AsyncIterable<GenerationEvent>;
}

export interface SchedulerStats {
  /** Sequences holding a batch slot (prefilling or decoding). */
  running: number;
  /** Accepted requests waiting for a slot. */
  waiting: number;
  /** Sequences in the last decode step. */
  lastBatchSize: number;
  /** Tokens held in the KV cache, and its capacity (slots × context). */
  kvTokensUsed: number;
  kvTokensCapacity: number;
  /** Time spent inside the session since the scheduler started (cumulative counters). */
  engine: EngineTimes;
  /** Prefix-cache lookups and contents; absent while no prefix cache runs. */
  prefixCache?: PrefixCacheStats;
}

/** Cumulative engine time: what share of a run's wall time the model math took, and at what batch. */
export interface EngineTimes {
  decodeSteps: number;
  decodeMs: number;
  /** Sequences summed over decode steps (mean batch = decodeRows / decodeSteps). */
  decodeRows: number;
  prefillCalls: number;
  prefillMs: number;
  prefillTokens: number;
}

export const zeroEngineTimes = (): EngineTimes => ({ decodeSteps: 0, decodeMs: 0, decodeRows: 0, prefillCalls: 0, prefillMs: 0, prefillTokens: 0 });

export interface SchedulerOptions {
  /** Most requests waiting for a slot; beyond it submit() throws QueueFullError. */
  maxQueue: number;
  /** Prompt tokens prefilled per scheduling step, so long prompts do not stall running decodes. */
  prefillChunk: number;
  /** Per-request deadline from submission; past it the request finishes with reason 'timeout'. 0 = none. */
  requestTimeoutMs: number;
  /** MiB of prompt KV kept for reuse by later prompts with the same start (prefix-cache-slots.ts); 0 or absent = off. */
  prefixCacheMb?: number;
}

/** The waiting queue is full: the server answers 429 with Retry-After. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

/** The scheduler is draining or closed and takes no new requests (503). */
export class SchedulerClosedError extends Error {
  override name = 'SchedulerClosedError';
}

/** Continuous batching over one ModelSession: requests join and leave the running batch between steps. */
export interface Scheduler {
  /** Throws QueueFullError, SchedulerClosedError, ContextLengthError (prompt + 1 > context), RangeError. */
  submit(request: GenerationRequest): RequestHandle;
  stats(): SchedulerStats;
  /** Stop accepting; resolve when every accepted request has finished (or `graceMs` passed, then abort the rest). */
  drain(graceMs: number): Promise<void>;
}
