/**
 * The figures of one measurement (a variant at one concurrency): client-side from the load
 * generator's request records, server-side from Prometheus histogram deltas; latency ratios against
 * the dense model measured in the same batch; and the client/server agreement check. Pure.
 */
import type { RequestRecord } from '../../loadtest/load-generator.ts';
import { summarize } from '../../loadtest/stats.ts';
import type { EngineTimes } from './engine-timing.ts';
import { type HistogramSeries, summarizeSeries } from './histogram.ts';
import { mean, median } from '../lib/stats.ts';
import { requestCounts } from '../lib/request-counts.ts';

/** Milliseconds. */
export interface LatencyStats {
  count: number;
  mean: number;
  p50: number;
  p99: number;
}

export interface ClientFigures {
  sent: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  e2e: LatencyStats | null;
  ttft: LatencyStats | null;
  tpot: LatencyStats | null;
  /** Completion tokens of successful requests per second of load (summed over rounds). */
  tokensPerSec: number;
  requestsPerSec: number;
  completionTokens: number;
  promptTokensMean: number;
  elapsedSec: number;
}

/** From the server's histograms (ms); p50/p99 interpolated within buckets. */
export interface ServerFigures {
  e2e: LatencyStats | null;
  ttft: LatencyStats | null;
  tpot: LatencyStats | null;
}

export interface Ratios {
  /** Client e2e p50 pruned / dense: the headline ratio. */
  clientP50: number;
  clientMean: number;
  clientP99: number;
  /** Server e2e mean (Δsum/Δcount) pruned / dense: exact. */
  serverMean: number;
  /** Server e2e p50 (bucket-interpolated) pruned / dense. */
  serverP50: number;
  /**
   * Per-round ratios: the variant's mean e2e in round r over dense's in the same round (the two ran
   * back to back), summarised. A disturbance that hits one round moves one pair, not the whole ratio.
   */
  paired: PairedRatio | null;
}

export interface PairedRatio {
  median: number;
  min: number;
  max: number;
  rounds: number;
}

/** Round-by-round ratios variant / dense (rounds where both have data), or null (pure). */
export function pairedRatio(variantRounds: readonly number[], denseRounds: readonly number[]): PairedRatio | null {
  const r: number[] = [];
  for (let i = 0; i < Math.min(variantRounds.length, denseRounds.length); i++) {
    const v = variantRounds[i]!;
    const d = denseRounds[i]!;
    if (Number.isFinite(v) && Number.isFinite(d) && d > 0) r.push(v / d);
  }
  if (r.length === 0) return null;
  return { median: median(r), min: Math.min(...r), max: Math.max(...r), rounds: r.length };
}

export interface Agreement {
  client: number;
  server: number;
  /** |server − client| / |client|. */
  relDiff: number;
  tolerance: number;
  agree: boolean;
}

export interface Measurement {
  concurrency: number;
  client: ClientFigures;
  server: ServerFigures;
  /** Against the dense model of the same batch; null for a dense row. */
  ratio: Ratios | null;
  agreement: {
    /** Client mean-e2e ratio vs server mean-e2e ratio (null for dense). */
    ratio: Agreement | null;
    /** Client mean e2e vs server mean e2e (absolute). */
    e2eMean: Agreement | null;
  };
  /** Time the variant's ModelSession spent in prefill/decode during these runs (same run, same requests). */
  engine?: EngineTimes;
  /** Client mean e2e of each round (ms; NaN for a round without successful requests). */
  roundE2eMs?: number[];
}

export const DEFAULT_TOLERANCE = 0.1;

/** Do two measurements of the same quantity agree within `tolerance` (relative to the client's)? */
export function agreement(client: number, server: number, tolerance = DEFAULT_TOLERANCE): Agreement {
  const relDiff = Math.abs(server - client) / Math.abs(client);
  return { client, server, relDiff, tolerance, agree: Number.isFinite(relDiff) && relDiff <= tolerance };
}

function stats(values: number[]): LatencyStats | null {
  const s = summarize(values);
  return s && { count: s.count, mean: s.mean, p50: s.p50, p99: s.p99 };
}

/** Client figures over the records of all rounds; `elapsedSec` is the sum of the rounds' run times. */
export function clientFigures(records: readonly RequestRecord[], elapsedSec: number): ClientFigures {
  const ok = records.filter((r) => r.ok);
  const completionTokens = ok.reduce((a, r) => a + (r.completionTokens ?? 0), 0);
  const prompts = ok.flatMap((r) => (r.promptTokens === null ? [] : [r.promptTokens]));
  return {
    ...requestCounts(records),
    e2e: stats(ok.map((r) => r.e2eMs)),
    ttft: stats(ok.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs]))),
    tpot: stats(ok.flatMap((r) => (r.tpotMs === null ? [] : [r.tpotMs]))),
    tokensPerSec: elapsedSec > 0 ? completionTokens / elapsedSec : 0,
    requestsPerSec: elapsedSec > 0 ? ok.length / elapsedSec : 0,
    completionTokens,
    promptTokensMean: mean(prompts),
    elapsedSec,
  };
}

/** Seconds-valued histogram delta → ms stats. */
export function serverStats(s: HistogramSeries | undefined): LatencyStats | null {
  const v = summarizeSeries(s);
  return v && { count: v.count, mean: v.mean * 1000, p50: v.p50 * 1000, p99: v.p99 * 1000 };
}

/** Latency ratios of a variant's measurement against the dense one (same concurrency, same batch). */
export function ratios(variant: Pick<Measurement, 'client' | 'server' | 'roundE2eMs'>, dense: Pick<Measurement, 'client' | 'server' | 'roundE2eMs'>): Ratios {
  const div = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !(b > 0) ? Number.NaN : a / b);
  return {
    clientP50: div(variant.client.e2e?.p50, dense.client.e2e?.p50),
    clientMean: div(variant.client.e2e?.mean, dense.client.e2e?.mean),
    clientP99: div(variant.client.e2e?.p99, dense.client.e2e?.p99),
    serverMean: div(variant.server.e2e?.mean, dense.server.e2e?.mean),
    serverP50: div(variant.server.e2e?.p50, dense.server.e2e?.p50),
    paired: variant.roundE2eMs && dense.roundE2eMs ? pairedRatio(variant.roundE2eMs, dense.roundE2eMs) : null,
  };
}

/** Complete a measurement: ratios and agreement checks (dense: `dense` undefined). */
export function finishMeasurement(
  concurrency: number,
  client: ClientFigures,
  server: ServerFigures,
  dense: Pick<Measurement, 'client' | 'server' | 'roundE2eMs'> | undefined,
  tolerance = DEFAULT_TOLERANCE,
  extra: Pick<Measurement, 'engine' | 'roundE2eMs'> = {},
): Measurement {
  const ratio = dense ? ratios({ client, server, ...extra }, dense) : null;
  return {
    concurrency,
    client,
    server,
    ...extra,
    ratio,
    agreement: {
      ratio: ratio && Number.isFinite(ratio.clientMean) && Number.isFinite(ratio.serverMean) ? agreement(ratio.clientMean, ratio.serverMean, tolerance) : null,
      e2eMean: client.e2e && server.e2e ? agreement(client.e2e.mean, server.e2e.mean, tolerance) : null,
    },
  };
}
