import type { ExecutionTarget } from '../device/device.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import { mean, median } from '../stats/sample-stats.ts';
import { ModelSession } from './ort-decoder-session.ts';

/**
 * Decode-step timing of ModelSessions (no server): the engine's own profile. The speedup benchmark
 * decomposes a step with it, and latency-aware pruning fits its cost model to it.
 */

export interface StepTiming {
  /** Median wall time of one decode step (ms). */
  medianMs: number;
  meanMs: number;
  steps: number;
}

export interface TimeDecodeOptions {
  batch: number;
  promptTokens: number;
  steps: number;
  warmup: number;
  threads: number;
  /** Stop timing after this many ms (the measured steps so far count). */
  maxMs?: number;
  /** Device and weight storage of the sessions; default CPU float32. */
  target?: ExecutionTarget;
}

/** A session with `batch` slots prefilled with `promptTokens` tokens each, ready to decode. */
async function prefilled(model: { spec: ModelSpec; weights: Weights }, o: TimeDecodeOptions): Promise<ModelSession> {
  const session = await ModelSession.create(model.spec, model.weights, {
    maxBatch: o.batch,
    maxContext: o.promptTokens + o.warmup + o.steps + 2,
    threads: o.threads,
    ...(o.target && { target: o.target }),
  });
  const V = model.spec.vocabSize;
  for (let s = 0; s < o.batch; s++) {
    const prompt = Array.from({ length: o.promptTokens }, (_, k) => 3 + ((s * 7919 + k * 104729) % Math.max(1, V - 3)));
    await session.prefill(s, prompt);
  }
  return session;
}

/** One batched decode step; returns its wall time (ms) and the next token. */
async function step(session: ModelSession, batch: number, token: number): Promise<[number, number]> {
  const t0 = performance.now();
  const logits = await session.decode(Array.from({ length: batch }, (_, slot) => ({ slot, token })));
  const dt = performance.now() - t0;
  return [dt, argmax(logits[0]!)];
}

function timingOf(times: number[]): StepTiming {
  return { medianMs: median(times), meanMs: mean(times), steps: times.length };
}

/**
 * Time decode steps of several models interleaved step by step (A B C A B C ...), so that other
 * load on the machine hits them alike; each gets `warmup` untimed steps first.
 */
export async function timeDecodeInterleaved(models: { spec: ModelSpec; weights: Weights }[], o: TimeDecodeOptions): Promise<StepTiming[]> {
  const sessions: ModelSession[] = [];
  try {
    for (const m of models) sessions.push(await prefilled(m, o));
    const times: number[][] = models.map(() => []);
    const tokens = models.map((m) => 5 % m.spec.vocabSize);
    const deadline = performance.now() + (o.maxMs ?? Number.POSITIVE_INFINITY);
    for (let i = 0; i < o.warmup + o.steps; i++) {
      for (let k = 0; k < sessions.length; k++) {
        const [dt, next] = await step(sessions[k]!, o.batch, tokens[k]!);
        tokens[k] = next;
        if (i >= o.warmup) times[k]!.push(dt);
      }
      if (performance.now() > deadline && i >= o.warmup + 3) break;
    }
    return times.map(timingOf);
  } finally {
    for (const s of sessions) await s.release();
  }
}

/** Prefill `batch` slots with `promptTokens` tokens each, then time `steps` batched decode steps. */
export async function timeDecode(model: { spec: ModelSpec; weights: Weights }, o: TimeDecodeOptions): Promise<StepTiming> {
  return (await timeDecodeInterleaved([model], o))[0]!;
}

export function argmax(x: Float32Array): number {
  let best = 0;
  let bestV = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (x[i]! > bestV) {
      bestV = x[i]!;
      best = i;
    }
  }
  return best;
}

