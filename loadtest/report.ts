/**
 * What a load test reports: one record per request, their summaries (overall and per model), the
 * k6-style thresholds, and the few lines printed for a terminal.
 */
import type { PromptOrder, ResolvedLoadOptions, Scenario } from './options.ts';
import { summarize, type Summary } from './stats.ts';

export type ErrorKind =
  | `http_${number}`
  | 'network'
  | 'timeout'
  | 'interrupted'
  | 'stream_error'
  | 'incomplete_stream'
  | 'bad_response';

/** What one request measured. Times in ms; `startMs` relative to the start of the run. */
export interface RequestRecord {
  index: number;
  model: string | null;
  startMs: number;
  ok: boolean;
  error: ErrorKind | null;
  status: number | null;
  e2eMs: number;
  /** Response headers received. */
  ttfbMs: number | null;
  ttftMs: number | null;
  itlMs: number[];
  tpotMs: number | null;
  completionTokens: number | null;
  promptTokens: number | null;
  /** Where `completionTokens` came from. */
  tokensFrom: 'usage' | 'chunks' | null;
  contentChunks: number;
  errorMessage: string | null;
}

export interface LatencyReport {
  e2e: Summary | null;
  ttft: Summary | null;
  itl: Summary | null;
  tpot: Summary | null;
}

/** Measurements of a set of requests (the whole run, or one model's share of it). */
export interface GroupReport {
  sent: number;
  ok: number;
  failed: number;
  errorRate: number;
  errors: Record<string, number>;
  /** Latencies of successful requests only (as the k6 script's trends). */
  latencyMs: LatencyReport;
  tokens: {
    completion: number;
    prompt: number;
    perRequest: Summary | null;
    /** Successful requests whose token count came from a usage object / from counting chunks. */
    fromUsage: number;
    fromChunks: number;
  };
  throughput: { requestsPerSec: number; outputTokensPerSec: number };
}

export interface ThresholdResult {
  name: string;
  /** The k6 spelling (`p(95)<10000`). */
  expression: string;
  value: number | null;
  passed: boolean;
}

export interface LoadReport extends GroupReport {
  version: 1;
  tool: 'mop-loadtest';
  startedAt: string;
  endpoint: string;
  scenario: Scenario;
  stream: boolean;
  models: string[];
  options: {
    rate: number | null;
    concurrency: number;
    maxInFlight: number;
    maxRequests: number;
    durationSec: number;
    gracefulStopSec: number;
    timeoutSec: number;
    maxTokens: number;
    temperature: number;
    ignoreEos: boolean;
    includeUsage: boolean;
    extraBody: Record<string, unknown>;
    promptsFile: string | null;
    promptCount: number;
    promptOrder: PromptOrder;
    sharedPrefixWords: number;
    seed: number;
  };
  elapsedSec: number;
  stoppedBy: 'requests' | 'duration' | 'signal';
  /** Open model: arrivals scheduled (sent + dropped). */
  arrivals: number;
  dropped: number;
  /** Most requests in flight at once, as the client counted them. */
  peakInFlight: number;
  /** Open model: how late arrivals started against their schedule (a client that cannot keep up shows here). */
  schedulerLagMs: Summary | null;
  /** First message of each error kind. */
  errorSamples: Record<string, string>;
  byModel: Record<string, GroupReport>;
  thresholds: ThresholdResult[];
  thresholdsPassed: boolean;
  requests?: RequestRecord[];
}

export function groupReport(records: readonly RequestRecord[], elapsedSec: number): GroupReport {
  const ok = records.filter((r) => r.ok);
  const errors: Record<string, number> = {};
  for (const r of records) if (r.error) errors[r.error] = (errors[r.error] ?? 0) + 1;
  const tokens = ok.map((r) => r.completionTokens ?? 0);
  const completion = tokens.reduce((a, b) => a + b, 0);
  const failed = records.length - ok.length;
  return {
    sent: records.length,
    ok: ok.length,
    failed,
    errorRate: records.length === 0 ? 0 : failed / records.length,
    errors,
    latencyMs: {
      e2e: summarize(ok.map((r) => r.e2eMs)),
      ttft: summarize(ok.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs]))),
      itl: summarize(ok.flatMap((r) => r.itlMs)),
      tpot: summarize(ok.flatMap((r) => (r.tpotMs === null ? [] : [r.tpotMs]))),
    },
    tokens: {
      completion,
      prompt: ok.reduce((a, r) => a + (r.promptTokens ?? 0), 0),
      perRequest: summarize(tokens),
      fromUsage: ok.filter((r) => r.tokensFrom === 'usage').length,
      fromChunks: ok.filter((r) => r.tokensFrom === 'chunks').length,
    },
    throughput: {
      requestsPerSec: elapsedSec > 0 ? ok.length / elapsedSec : 0,
      outputTokensPerSec: elapsedSec > 0 ? completion / elapsedSec : 0,
    },
  };
}

/** What a run gathered, besides its options: the report is made of these. */
export interface RunOutcome {
  startedAt: string;
  /** In request order. */
  records: RequestRecord[];
  elapsedSec: number;
  stoppedBy: LoadReport['stoppedBy'];
  issued: number;
  /** Open model: arrivals scheduled, dropped, and how late each started against its schedule. */
  arrivals: number;
  dropped: number;
  lags: number[];
  peakInFlight: number;
  promptCount: number;
}

/** The report of a run: overall and per-model measurements, error samples and k6-style thresholds. */
export function buildLoadReport(o: ResolvedLoadOptions, run: RunOutcome): LoadReport {
  const overall = groupReport(run.records, run.elapsedSec);
  const byModel: Record<string, GroupReport> = {};
  for (const m of o.models) byModel[m] = groupReport(run.records.filter((r) => r.model === m), run.elapsedSec);
  const errorSamples: Record<string, string> = {};
  for (const r of run.records) if (r.error && r.errorMessage && !(r.error in errorSamples)) errorSamples[r.error] = r.errorMessage;

  const p95 = overall.latencyMs.e2e?.p95 ?? null;
  const thresholds: ThresholdResult[] = [
    { name: 'completion_e2e_ms', expression: `p(95)<${o.p95Ms}`, value: p95, passed: p95 === null || p95 < o.p95Ms },
    {
      name: 'completion_errors',
      expression: `rate<${o.maxErrorRate}`,
      value: overall.errorRate,
      passed: overall.sent === 0 || overall.errorRate < o.maxErrorRate,
    },
  ];

  const report: LoadReport = {
    version: 1,
    tool: 'mop-loadtest',
    startedAt: run.startedAt,
    endpoint: o.endpoint,
    scenario: o.scenario,
    stream: o.stream,
    models: o.models,
    options: {
      rate: o.scenario === 'open' ? o.rate : null,
      concurrency: o.concurrency,
      maxInFlight: o.maxInFlight,
      maxRequests: o.maxRequests,
      durationSec: o.durationSec,
      gracefulStopSec: o.gracefulStopSec,
      timeoutSec: o.timeoutSec,
      maxTokens: o.maxTokens,
      temperature: o.temperature,
      ignoreEos: o.ignoreEos,
      includeUsage: o.includeUsage,
      extraBody: o.extraBody,
      promptsFile: o.prompts ? null : o.promptsFile,
      promptCount: run.promptCount,
      promptOrder: o.promptOrder,
      sharedPrefixWords: o.sharedPrefixWords,
      seed: o.seed,
    },
    elapsedSec: run.elapsedSec,
    stoppedBy: run.stoppedBy,
    arrivals: o.scenario === 'open' ? run.arrivals : run.issued,
    dropped: run.dropped,
    peakInFlight: run.peakInFlight,
    schedulerLagMs: o.scenario === 'open' ? summarize(run.lags) : null,
    ...overall,
    errorSamples,
    byModel,
    thresholds,
    thresholdsPassed: thresholds.every((t) => t.passed),
  };
  if (o.recordRequests) report.requests = run.records;
  return report;
}

const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : '-');

function latencyLine(label: string, s: Summary | null): string | null {
  if (!s) return null;
  return `${label.padEnd(9)} p50 ${f1(s.p50)}  p90 ${f1(s.p90)}  p99 ${f1(s.p99)}  (mean ${f1(s.mean)}, min ${f1(s.min)}, max ${f1(s.max)}, n=${s.count})`;
}

function errorsText(errors: Record<string, number>): string {
  const parts = Object.entries(errors)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k}: ${v}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** A few lines for a terminal: what ran, counts, throughput, latency percentiles, thresholds. */
export function formatSummary(r: LoadReport): string {
  const shape =
    r.scenario === 'open'
      ? `open model, ${r.options.rate} req/s, max in flight ${r.options.maxInFlight}`
      : `closed model, concurrency ${r.options.concurrency}`;
  const models = r.models.length ? r.models.join(', ') : '(server default)';
  const lines = [
    `${shape}, ${r.stream ? 'streaming' : 'non-streaming'}, max_tokens ${r.options.maxTokens}, model ${models} → ${r.endpoint}`,
    `requests: ${r.sent} sent, ${r.ok} ok, ${r.failed} failed${errorsText(r.errors)}` +
      (r.scenario === 'open' ? `, ${r.dropped} dropped of ${r.arrivals} arrivals` : '') +
      ` · ${r.elapsedSec.toFixed(2)} s · stopped by ${r.stoppedBy} · peak in flight ${r.peakInFlight}`,
    `throughput: ${r.throughput.requestsPerSec.toFixed(2)} req/s, ${r.throughput.outputTokensPerSec.toFixed(1)} output tok/s` +
      (r.tokens.perRequest ? ` (${r.tokens.perRequest.mean.toFixed(1)} tok/req)` : ''),
  ];
  for (const l of [
    latencyLine('e2e ms', r.latencyMs.e2e),
    latencyLine('ttft ms', r.latencyMs.ttft),
    latencyLine('itl ms', r.latencyMs.itl),
    latencyLine('tpot ms', r.latencyMs.tpot),
  ]) {
    if (l) lines.push(l);
  }
  if (r.models.length > 1) {
    for (const [m, g] of Object.entries(r.byModel)) {
      const e = g.latencyMs.e2e;
      lines.push(
        `  ${m}: ${g.ok}/${g.sent} ok, e2e p50 ${f1(e?.p50 ?? Number.NaN)} p99 ${f1(e?.p99 ?? Number.NaN)} ms` +
          (g.latencyMs.ttft ? `, ttft p50 ${f1(g.latencyMs.ttft.p50)} ms` : '') +
          `, ${g.throughput.outputTokensPerSec.toFixed(1)} tok/s`,
      );
    }
  }
  const failedT = r.thresholds.filter((t) => !t.passed);
  lines.push(
    failedT.length === 0
      ? `thresholds: passed (${r.thresholds.map((t) => `${t.name} ${t.expression}`).join(', ')})`
      : `thresholds: FAILED ${failedT.map((t) => `${t.name} ${t.expression} (was ${t.value === null ? '-' : f1(t.value)})`).join(', ')}`,
  );
  return lines.join('\n');
}
