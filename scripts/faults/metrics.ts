/** `mop_requests_total{outcome}` from /metrics (summed over models), and its change across a scenario. */
import { Agent, request } from 'undici';
import { assertLoopbackUrl } from '../../loadtest/loopback.ts';

export type OutcomeCounts = Record<string, number>;

const agent = new Agent({ pipelining: 0 });

/** The counter by outcome, or null when /metrics does not answer within `waitMs`. */
export async function requestOutcomes(baseUrl: string, waitMs = 5000): Promise<OutcomeCounts | null> {
  assertLoopbackUrl(baseUrl);
  try {
    const res = await request(baseUrl + '/metrics', { dispatcher: agent, reset: true, headersTimeout: waitMs, bodyTimeout: waitMs, signal: AbortSignal.timeout(waitMs) });
    const text = await res.body.text();
    return res.statusCode === 200 ? parseRequestOutcomes(text) : null;
  } catch {
    return null;
  }
}

export function parseRequestOutcomes(text: string): OutcomeCounts {
  const counts: OutcomeCounts = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('mop_requests_total{')) continue;
    const outcome = /outcome="([^"]*)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (outcome !== undefined && Number.isFinite(value)) counts[outcome] = (counts[outcome] ?? 0) + value;
  }
  return counts;
}

/** after − before per outcome, zero changes left out; null when either scrape failed. */
export function outcomeDeltas(before: OutcomeCounts | null, after: OutcomeCounts | null): OutcomeCounts | null {
  if (!before || !after) return null;
  const delta: OutcomeCounts = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const d = (after[k] ?? 0) - (before[k] ?? 0);
    if (d !== 0) delta[k] = d;
  }
  return delta;
}
