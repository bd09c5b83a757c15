/**
 * What bench:faults records (the report JSON), and the tally of request outcomes into the table
 * rows the report shows. Plain data: markdown.ts renders it, the fixture test builds it by hand.
 */
import { quantileSorted } from '../../loadtest/stats.ts';
import { type Outcome, neverAnswered } from './client.ts';

/** One row of a scenario's table: the requests of one role (load, flood, admin call, ...). */
export interface RequestTally {
  group: string;
  sent: number;
  /** Count by status with the error code where one came, e.g. `200`, `429 queue_full`, `503 engine_stalled`; streams under `200`. */
  byStatus: Record<string, number>;
  /** Streams that ended with finish_reason, by reason (a stream of several choices counts its first reason). */
  streamFinish: Record<string, number>;
  /** Streams that ended with an error event, by code. */
  streamError: Record<string, number>;
  /** Streams or bodies closed before their end. */
  cut: number;
  /** Connection failed or closed before any status. */
  connectionFailed: number;
  /** Hung up by the client on purpose (disconnect scenarios). */
  clientAborted: number;
  /** No status within the wait, or a stream that did not end within it. */
  neverAnswered: number;
  /** Latency of the answered ones (ms). */
  p50Ms: number | null;
  maxMs: number | null;
}

export interface Check {
  what: string;
  ok: boolean;
  /** What was seen. */
  seen: string;
}

/** A time to detection: ms from the fault to the first sign of it (null: never seen within the scenario). */
export interface Detection {
  what: string;
  ms: number | null;
}

export interface ScenarioResult {
  id: string;
  title: string;
  /** What the scenario did, in a sentence or two. */
  procedure: string;
  /** `mop serve` or `fault server` (mop serve with fault-injectable engine workers), and the flags. */
  server: string;
  rows: RequestTally[];
  detections: Detection[];
  /** Change of mop_requests_total by outcome over the scenario; null when /metrics did not answer. */
  metricDeltas: Record<string, number> | null;
  /** Server process RSS in MiB before the fault and at the end (null: the process was gone or unreadable). */
  rssBeforeMiB: number | null;
  rssAfterMiB: number | null;
  checks: Check[];
  /** Server log lines worth reading next to the numbers (errors, stalls, restarts). */
  notes: string[];
  /** The harness could not run the scenario (the server did not start, ...). */
  error: string | null;
  seconds: number;
}

export interface SoakRow {
  kind: string;
  /** Requests asked for, and sent (fewer when the time cap ended it). */
  planned: number;
  sent: number;
  ok: number;
  failed: number;
  neverAnswered: number;
  seconds: number;
  /** RSS after warm-up, lowest, highest and at the end, MiB. */
  rssStartMiB: number;
  rssMinMiB: number;
  rssMaxMiB: number;
  rssEndMiB: number;
  /** (end − start) / start, and (max − start) / start. */
  driftEnd: number;
  driftMax: number;
  /** RSS samples (MiB) along the run, for the curious. */
  samples: number[];
}

export interface SoakResult {
  model: string;
  concurrency: number;
  server: string;
  /** Unmeasured requests of every kind sent first (older reports: absent). */
  warmup?: number;
  rows: SoakRow[];
  /** Allowed drift either way (0.1 = ±10%). */
  tolerance: number;
  error: string | null;
}

export interface FaultsReport {
  date: string;
  command: string;
  /** The model the scenarios served and how (dtype, threads, batch, queue, context). */
  model: string;
  load: string;
  machine: { cpu: string; cores: number; memGiB: number; loadAvgStart: number[]; loadAvgEnd: number[]; node: string };
  /** git describe of the code measured, with `-dirty` when the tree had uncommitted changes. */
  code: string;
  scenarios: ScenarioResult[];
  soak: SoakResult | null;
  seconds: number;
}

/** The row of a group of outcomes. */
export function tally(group: string, outcomes: readonly Outcome[]): RequestTally {
  const row: RequestTally = { group, sent: outcomes.length, byStatus: {}, streamFinish: {}, streamError: {}, cut: 0, connectionFailed: 0, clientAborted: 0, neverAnswered: 0, p50Ms: null, maxMs: null };
  const inc = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);
  const answered: number[] = [];
  for (const o of outcomes) {
    if (o.status !== 0) inc(row.byStatus, o.status >= 400 && o.code !== undefined && o.end === 'body' ? `${o.status} ${o.code}` : String(o.status));
    if (neverAnswered(o)) row.neverAnswered++;
    else if (o.end === 'connection') row.connectionFailed++;
    else if (o.end === 'client-abort') row.clientAborted++;
    else if (o.end === 'cut') row.cut++;
    else if (o.end === 'error-event') inc(row.streamError, o.code ?? 'error');
    else if (o.end === 'finish') inc(row.streamFinish, o.finishReasons?.[0] ?? '?');
    if (!neverAnswered(o) && o.end !== 'connection') answered.push(o.ms);
  }
  if (answered.length > 0) {
    const sorted = answered.sort((a, b) => a - b);
    row.p50Ms = quantileSorted(sorted, 0.5);
    row.maxMs = sorted[sorted.length - 1]!;
  }
  return row;
}

/** Never-answered requests across a scenario's rows. */
export function scenarioNeverAnswered(s: ScenarioResult): number {
  return s.rows.reduce((n, r) => n + r.neverAnswered, 0);
}

/** A scenario passes when the harness ran it, nothing went unanswered and every check held. */
export function scenarioPassed(s: ScenarioResult): boolean {
  return s.error === null && scenarioNeverAnswered(s) === 0 && s.checks.every((c) => c.ok);
}
