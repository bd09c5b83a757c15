/**
 * Phase bookkeeping for the isolation benchmark: which probe and which request belongs to which
 * phase (by the time it was sent), and what each phase measured. Pure: the benchmark records raw
 * samples, these functions turn them into figures.
 */
import { type Summary, summarize } from '../../loadtest/stats.ts';
import { requestCounts } from '../lib/request-counts.ts';

export type PhaseName = 'before' | 'during' | 'after';
export const PHASES: readonly PhaseName[] = ['before', 'during', 'after'];
export type ProbeEndpoint = '/health' | '/metrics' | '/ready';
export const PROBE_ENDPOINTS: readonly ProbeEndpoint[] = ['/health', '/metrics', '/ready'];

/**
 * How long a prober waits before it counts a probe as failed: the chart's readiness (3 s) and
 * liveness (5 s) probe timeouts (deploy/helm/mop-serve/values.yaml), Prometheus' default scrape
 * timeout (10 s). A stalled server that answers 200 after 20 s has failed its probes all the same.
 */
export const PROBE_TIMEOUT_MS: Record<ProbeEndpoint, number> = { '/health': 5000, '/metrics': 10_000, '/ready': 3000 };

/** A time window on the benchmark's clock (ms, performance.now()). */
export interface PhaseWindow {
  phase: PhaseName;
  startMs: number;
  endMs: number;
}

/** One probe: sent at `atMs`, answered after `ms`; status 0 = no HTTP answer (timeout, network). */
export interface ProbeSample {
  endpoint: ProbeEndpoint;
  atMs: number;
  ms: number;
  status: number;
}

/** One serving request on the benchmark's clock (from the load generator's record). */
export interface RequestSample {
  atMs: number;
  ok: boolean;
  error: string | null;
  e2eMs: number;
  ttftMs: number | null;
}

export interface ProbeFigures {
  count: number;
  /** Probes that did not answer 200 (status 0 included). */
  non200: number;
  /** Probes answered 200, but later than PROBE_TIMEOUT_MS: a kubelet or Prometheus gave up on them. */
  late: number;
  /** Latency of every probe, answered or not, in ms. */
  latency: Summary | null;
}

export interface RequestFigures {
  sent: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  e2eMs: Summary | null;
  ttftMs: Summary | null;
}

export interface PhaseFigures {
  phase: PhaseName;
  seconds: number;
  probes: Record<ProbeEndpoint, ProbeFigures>;
  requests: RequestFigures;
}

/** The phase whose window holds time `t` (windows are half-open [start, end)), if any. */
export function phaseAt(windows: readonly PhaseWindow[], t: number): PhaseName | undefined {
  return windows.find((w) => t >= w.startMs && t < w.endMs)?.phase;
}

export function probeFigures(samples: readonly ProbeSample[], timeoutMs: number): ProbeFigures {
  return {
    count: samples.length,
    non200: samples.filter((s) => s.status !== 200).length,
    late: samples.filter((s) => s.status === 200 && s.ms > timeoutMs).length,
    latency: summarize(samples.map((s) => s.ms)),
  };
}

/** Latencies are of successful requests only, as in the load generator's report. */
export function requestFigures(samples: readonly RequestSample[]): RequestFigures {
  const ok = samples.filter((s) => s.ok);
  return {
    ...requestCounts(samples),
    e2eMs: summarize(ok.map((s) => s.e2eMs)),
    ttftMs: summarize(ok.flatMap((s) => (s.ttftMs === null ? [] : [s.ttftMs]))),
  };
}

/**
 * Figures per phase. A sample belongs to the phase in which it was sent; samples outside every
 * window (the drain between phases) are left out.
 */
export function phaseFigures(windows: readonly PhaseWindow[], probes: readonly ProbeSample[], requests: readonly RequestSample[]): PhaseFigures[] {
  return windows.map((w) => {
    const inside = (t: number) => t >= w.startMs && t < w.endMs;
    const mine = probes.filter((p) => inside(p.atMs));
    return {
      phase: w.phase,
      seconds: (w.endMs - w.startMs) / 1000,
      probes: Object.fromEntries(PROBE_ENDPOINTS.map((e) => [e, probeFigures(mine.filter((p) => p.endpoint === e), PROBE_TIMEOUT_MS[e])])) as Record<ProbeEndpoint, ProbeFigures>,
      requests: requestFigures(requests.filter((r) => inside(r.atMs))),
    };
  });
}
