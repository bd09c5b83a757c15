/**
 * Engine time inside the running server: each variant's scheduler counts how long its session's
 * prefill and decode calls take (SchedulerStats.engine, pushed from the engine worker), and the
 * benchmark takes the difference over a load run. Against the wall time of the run and the
 * server's per-token histogram this splits a request's latency into prefill, decode steps, and
 * everything outside the engine (sampling, scheduling, messages between threads, HTTP/SSE).
 */
import { type EngineTimes, zeroEngineTimes } from '../../src/runtime/engine/scheduler-types.ts';
import type { Scheduler } from '../../src/runtime/engine/scheduler-types.ts';

export { type EngineTimes, zeroEngineTimes };

export function addEngineTimes(a: EngineTimes, b: EngineTimes): EngineTimes {
  return {
    decodeSteps: a.decodeSteps + b.decodeSteps,
    decodeMs: a.decodeMs + b.decodeMs,
    decodeRows: a.decodeRows + b.decodeRows,
    prefillCalls: a.prefillCalls + b.prefillCalls,
    prefillMs: a.prefillMs + b.prefillMs,
    prefillTokens: a.prefillTokens + b.prefillTokens,
  };
}

export function subtractEngineTimes(a: EngineTimes, b: EngineTimes): EngineTimes {
  return addEngineTimes(a, { decodeSteps: -b.decodeSteps, decodeMs: -b.decodeMs, decodeRows: -b.decodeRows, prefillCalls: -b.prefillCalls, prefillMs: -b.prefillMs, prefillTokens: -b.prefillTokens });
}

export interface EngineProbe {
  /** The times since the last take (and start counting afresh). */
  take(): EngineTimes;
}

const probes = new WeakMap<Scheduler, EngineProbe>();

/** A probe over a scheduler's cumulative engine counters; later calls return the same probe. */
export function instrumentScheduler(scheduler: Scheduler): EngineProbe {
  const existing = probes.get(scheduler);
  if (existing) return existing;
  let last = scheduler.stats().engine;
  const probe: EngineProbe = {
    take() {
      const now = scheduler.stats().engine;
      const out = subtractEngineTimes(now, last);
      last = now;
      return out;
    },
  };
  probes.set(scheduler, probe);
  return probe;
}

/** Derived per-run figures (pure). */
export function engineSummary(t: EngineTimes, wallSec: number): { meanStepMs: number; meanBatch: number; busyShare: number; prefillShare: number; decodeShare: number } {
  const wallMs = wallSec * 1000;
  return {
    meanStepMs: t.decodeSteps ? t.decodeMs / t.decodeSteps : Number.NaN,
    meanBatch: t.decodeSteps ? t.decodeRows / t.decodeSteps : Number.NaN,
    busyShare: wallMs > 0 ? (t.decodeMs + t.prefillMs) / wallMs : Number.NaN,
    prefillShare: wallMs > 0 ? t.prefillMs / wallMs : Number.NaN,
    decodeShare: wallMs > 0 ? t.decodeMs / wallMs : Number.NaN,
  };
}
