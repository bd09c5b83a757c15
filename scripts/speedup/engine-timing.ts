/**
 * Engine time inside the running server: the benchmark wraps a served variant's DecoderSession
 * `prefill` and `decode` (on the instance, from outside; src/ is untouched) and adds up how long
 * they take while a load run is in flight. Against the wall time of the run and the server's
 * per-token histogram this splits a request's latency into prefill, decode steps, and everything
 * outside the engine (sampling, scheduling, HTTP/SSE), measured in the same run.
 */
import type { DecoderSession } from '../../src/runtime/engine/decoder-session.ts';

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

export interface EngineProbe {
  /** The times since the last take (and start counting afresh). */
  take(): EngineTimes;
}

const probes = new WeakMap<DecoderSession, EngineProbe>();

/** Wrap the session's prefill/decode once; later calls return the same probe. */
export function instrumentSession(session: DecoderSession): EngineProbe {
  const existing = probes.get(session);
  if (existing) return existing;
  let t = zeroEngineTimes();
  const decode = session.decode.bind(session);
  const prefill = session.prefill.bind(session);
  session.decode = async (entries) => {
    const t0 = performance.now();
    try {
      return await decode(entries);
    } finally {
      t.decodeMs += performance.now() - t0;
      t.decodeSteps++;
      t.decodeRows += entries.length;
    }
  };
  session.prefill = async (slot, tokens) => {
    const t0 = performance.now();
    try {
      return await prefill(slot, tokens);
    } finally {
      t.prefillMs += performance.now() - t0;
      t.prefillCalls++;
      t.prefillTokens += tokens.length;
    }
  };
  const probe: EngineProbe = {
    take() {
      const out = t;
      t = zeroEngineTimes();
      return out;
    },
  };
  probes.set(session, probe);
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
