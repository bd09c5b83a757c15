/**
 * The isolation targets: pruning in the background must not starve the probes or the traffic.
 * Kubernetes restarts a pod whose liveness probe times out (1 s by default) and takes it out of
 * the Service when readiness fails, so /health must stay fast and /ready must never leave 200.
 */
import { type PhaseFigures, PROBE_TIMEOUT_MS } from './phases.ts';

export const LIMITS = {
  /** /health p99 while a prune runs (ms). */
  healthP99Ms: 50,
  /** /health slowest answer while a prune runs (ms). */
  healthMaxMs: 250,
  /** serving e2e p99 during a prune, as a multiple of the p99 before it. */
  servingP99Ratio: 2,
} as const;

export interface TargetResult {
  concurrency: number;
  name: string;
  /** What was measured, in words and figures. */
  value: string;
  limit: string;
  met: boolean;
}

const ms = (x: number | undefined) => (x === undefined ? 'n/a' : `${x.toFixed(1)} ms`);

/** The targets for one concurrency's three phases. A target with nothing measured is not met. */
export function evaluateTargets(concurrency: number, phases: readonly PhaseFigures[]): TargetResult[] {
  const by = (name: string) => phases.find((p) => p.phase === name);
  const before = by('before');
  const during = by('during');
  const health = during?.probes['/health'].latency ?? null;
  const readyBad = phases.reduce((a, p) => a + p.probes['/ready'].non200 + p.probes['/ready'].late, 0);
  const readyCount = phases.reduce((a, p) => a + p.probes['/ready'].count, 0);
  const failed = phases.reduce((a, p) => a + p.requests.failed, 0);
  const sent = phases.reduce((a, p) => a + p.requests.sent, 0);
  const p99Before = before?.requests.e2eMs?.p99;
  const p99During = during?.requests.e2eMs?.p99;
  const ratio = p99Before !== undefined && p99During !== undefined ? p99During / p99Before : undefined;
  return [
    { concurrency, name: '/health p99 during prune', value: ms(health?.p99), limit: `≤ ${LIMITS.healthP99Ms} ms`, met: health !== null && health.p99 <= LIMITS.healthP99Ms },
    { concurrency, name: '/health max during prune', value: ms(health?.max), limit: `≤ ${LIMITS.healthMaxMs} ms`, met: health !== null && health.max <= LIMITS.healthMaxMs },
    {
      concurrency,
      name: `/ready always 200 within ${PROBE_TIMEOUT_MS['/ready'] / 1000} s`,
      value: `${readyBad} of ${readyCount} probes failed`,
      limit: '0',
      met: readyCount > 0 && readyBad === 0,
    },
    { concurrency, name: 'failed requests', value: `${failed} of ${sent}`, limit: '0', met: sent > 0 && failed === 0 },
    {
      concurrency,
      name: 'serving p99 during / before',
      value: ratio === undefined ? 'n/a' : `${ratio.toFixed(2)}× (${ms(p99During)} / ${ms(p99Before)})`,
      limit: `≤ ${LIMITS.servingP99Ratio}×`,
      met: ratio !== undefined && ratio <= LIMITS.servingP99Ratio,
    },
  ];
}
