/**
 * A load generator for `POST /v1/completions` that needs no k6: the same two scenarios and options
 * as `loadtest/k6/completions.js` (see the table in options.ts), measured from the client:
 *
 * - end-to-end latency: from just before the request is sent to the last byte of the response;
 * - TTFT (streaming): to the first SSE chunk whose `text` is non-empty (not to the first byte: a
 *   server may send its headers, or a role-only chunk, before any token exists);
 * - inter-token latency (streaming): the gaps between consecutive content chunks as they arrive.
 *   One chunk usually carries one token, but chunks that reach the client in the same network read
 *   show up as a ~0 ms gap, so ITL is what a client sees, not the server's decode step;
 * - time per output token (streaming): (e2e − TTFT) / (completion tokens − 1), vLLM's definition;
 * - completion tokens: `usage` of the response (non-streaming) or of the final usage chunk
 *   (`stream_options.include_usage`); without that chunk, the number of content chunks;
 * - throughput: successful requests and their completion tokens per second of the run;
 * - errors by kind: `http_<status>`, `network`, `timeout`, `interrupted` (still in flight at the
 *   graceful-stop deadline), `stream_error` (an `error` event), `incomplete_stream` (no `[DONE]`),
 *   `bad_response` (unparseable body); `dropped` arrivals (open model) are counted apart, as k6 does.
 *
 * Every run is bounded in requests (`maxRequests`) and in time (`durationSec` + `gracefulStopSec`,
 * and each request by `timeoutSec`), and only targets loopback hosts.
 */
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { assertLoopbackUrl } from './loopback.ts';
import {
  resolveLoadOptions,
  type LoadOptionsInput,
  type PromptOrder,
  type ResolvedLoadOptions,
  type Scenario,
} from './options.ts';
import { loadPrompts, promptIndex } from './prompts.ts';
import { SseParser } from './sse.ts';
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

/** The JSON body of request `i`: the k6 script builds the same one (a test compares them). */
export function buildRequestBody(o: ResolvedLoadOptions, prompts: readonly string[], i: number): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (o.models.length > 0) body.model = o.models[i % o.models.length];
  body.prompt = prompts[promptIndex(i, prompts.length, o.promptOrder, o.seed)];
  body.max_tokens = o.maxTokens;
  body.temperature = o.temperature;
  if (o.ignoreEos) body.ignore_eos = true;
  Object.assign(body, o.extraBody);
  body.stream = o.stream;
  if (o.stream && o.includeUsage) body.stream_options = { include_usage: true };
  return body;
}

/** The outcome of one request before it is stamped with index/model/start. */
type Outcome = Omit<RequestRecord, 'index' | 'model' | 'startMs'>;

class RequestFailure extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly status: number | null = null,
  ) {
    super(message);
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

function errorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e !== null && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

interface Usage {
  completion_tokens?: unknown;
  prompt_tokens?: unknown;
}

function readUsage(u: unknown): { completion: number | null; prompt: number | null } {
  if (u === null || typeof u !== 'object') return { completion: null, prompt: null };
  const { completion_tokens: c, prompt_tokens: p } = u as Usage;
  return { completion: typeof c === 'number' ? c : null, prompt: typeof p === 'number' ? p : null };
}

/** The generated text a chunk carries (completions `text`, or chat `delta.content`). */
function chunkText(chunk: unknown): string {
  const choices = (chunk as { choices?: unknown }).choices;
  if (!Array.isArray(choices)) return '';
  let text = '';
  for (const c of choices as Array<{ text?: unknown; delta?: { content?: unknown } }>) {
    if (typeof c?.text === 'string') text += c.text;
    else if (typeof c?.delta?.content === 'string') text += c.delta.content;
  }
  return text;
}

async function sendOne(
  o: ResolvedLoadOptions,
  agent: Agent,
  body: Record<string, unknown>,
  runSignal: AbortSignal,
): Promise<Outcome> {
  const ctrl = new AbortController();
  // An object, not a `let`: it is set from callbacks, which TypeScript's narrowing does not follow.
  const abort: { by: 'timeout' | 'interrupted' | null } = { by: null };
  const timer = setTimeout(() => {
    abort.by ??= 'timeout';
    ctrl.abort(new Error(`no complete response within ${o.timeoutSec} s`));
  }, o.timeoutSec * 1000);
  const onRunAbort = (): void => {
    abort.by ??= 'interrupted';
    ctrl.abort(new Error('still in flight when the run stopped'));
  };
  if (runSignal.aborted) onRunAbort();
  else runSignal.addEventListener('abort', onRunAbort, { once: true });

  const out: Outcome = {
    ok: false,
    error: null,
    status: null,
    e2eMs: 0,
    ttfbMs: null,
    ttftMs: null,
    itlMs: [],
    tpotMs: null,
    completionTokens: null,
    promptTokens: null,
    tokensFrom: null,
    contentChunks: 0,
    errorMessage: null,
  };
  const payload = JSON.stringify(body);
  const t0 = performance.now();
  try {
    const res = await request(o.endpoint, {
      method: 'POST',
      dispatcher: agent,
      signal: ctrl.signal,
      headers: { 'content-type': 'application/json', accept: o.stream ? 'text/event-stream' : 'application/json', ...(o.apiKey !== undefined && { authorization: `Bearer ${o.apiKey}` }) },
      body: payload,
    });
    out.ttfbMs = performance.now() - t0;
    out.status = res.statusCode;
    if (res.statusCode < 200 || res.statusCode >= 300) {
      const text = await res.body.text();
      throw new RequestFailure(`http_${res.statusCode}`, `HTTP ${res.statusCode}: ${errorMessageOf(text)}`, res.statusCode);
    }
    if (!o.stream) {
      const text = await res.body.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new RequestFailure('bad_response', `response is not JSON: ${text.slice(0, 200)}`);
      }
      if (!Array.isArray((json as { choices?: unknown }).choices)) {
        throw new RequestFailure('bad_response', `response has no choices: ${text.slice(0, 200)}`);
      }
      const usage = readUsage((json as { usage?: unknown }).usage);
      out.completionTokens = usage.completion;
      out.promptTokens = usage.prompt;
      out.tokensFrom = usage.completion === null ? null : 'usage';
    } else {
      const parser = new SseParser();
      const decoder = new TextDecoder();
      let done = false;
      let lastContentAt = -1;
      let usage: { completion: number | null; prompt: number | null } = { completion: null, prompt: null };
      const handle = (data: string, at: number): void => {
        if (done) return;
        if (data.trim() === '[DONE]') {
          done = true;
          return;
        }
        let chunk: unknown;
        try {
          chunk = JSON.parse(data);
        } catch {
          throw new RequestFailure('bad_response', `SSE data is not JSON: ${data.slice(0, 200)}`);
        }
        if (chunk !== null && typeof chunk === 'object' && 'error' in chunk) {
          throw new RequestFailure('stream_error', `error event: ${errorMessageOf(data)}`);
        }
        const u = readUsage((chunk as { usage?: unknown }).usage);
        if (u.completion !== null) usage = u;
        if (chunkText(chunk) === '') return;
        out.contentChunks++;
        if (lastContentAt < 0) out.ttftMs = at - t0;
        else out.itlMs.push(at - lastContentAt);
        lastContentAt = at;
      };
      for await (const buf of res.body) {
        const at = performance.now();
        for (const data of parser.push(decoder.decode(buf as Buffer, { stream: true }))) handle(data, at);
      }
      const at = performance.now();
      for (const data of parser.push(decoder.decode())) handle(data, at);
      for (const data of parser.end()) handle(data, at);
      if (!done) throw new RequestFailure('incomplete_stream', 'the stream ended without data: [DONE]');
      out.promptTokens = usage.prompt;
      if (usage.completion !== null) {
        out.completionTokens = usage.completion;
        out.tokensFrom = 'usage';
      } else {
        out.completionTokens = out.contentChunks;
        out.tokensFrom = 'chunks';
      }
    }
    out.e2eMs = performance.now() - t0;
    out.ok = true;
    if (o.stream && out.ttftMs !== null && out.completionTokens !== null && out.completionTokens > 1) {
      out.tpotMs = (out.e2eMs - out.ttftMs) / (out.completionTokens - 1);
    }
  } catch (err) {
    out.e2eMs = performance.now() - t0;
    out.ok = false;
    if (err instanceof RequestFailure) {
      out.error = err.kind;
      out.errorMessage = err.message;
    } else if (abort.by !== null) {
      out.error = abort.by;
      out.errorMessage = abort.by === 'timeout' ? `no complete response within ${o.timeoutSec} s` : 'still in flight when the run stopped';
    } else if (TIMEOUT_CODES.has(errorCode(err) ?? '')) {
      out.error = 'timeout';
      out.errorMessage = `${errorCode(err)}: ${(err as Error).message}`;
    } else {
      out.error = 'network';
      const code = errorCode(err);
      out.errorMessage = `${code ? `${code}: ` : ''}${(err as Error)?.message ?? String(err)}`;
    }
  } finally {
    clearTimeout(timer);
    runSignal.removeEventListener('abort', onRunAbort);
  }
  return out;
}

/** OpenAI's `{"error": {"message": ...}}`, or the start of whatever the body was. */
function errorMessageOf(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: { message?: unknown } | string };
    if (typeof j.error === 'string') return j.error;
    if (typeof j.error?.message === 'string') return j.error.message;
  } catch {
    // not JSON
  }
  return text.slice(0, 200);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(1, Math.ceil(ms)));
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function groupReport(records: readonly RequestRecord[], elapsedSec: number): GroupReport {
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

/**
 * Runs one load test and returns its report. Throws `LoadConfigError` (before sending anything) for
 * a bad option, an unreadable prompt file or a non-loopback URL.
 */
export async function runLoad(input: LoadOptionsInput): Promise<LoadReport> {
  const o = resolveLoadOptions(input);
  assertLoopbackUrl(o.endpoint);
  const prompts = o.prompts ?? (await loadPrompts(o.promptsFile));
  const poolSize = o.scenario === 'closed' ? o.concurrency : Math.max(o.concurrency, o.maxInFlight);
  const agent = new Agent({
    connections: poolSize,
    pipelining: 1,
    headersTimeout: o.timeoutSec * 1000 + 1000,
    bodyTimeout: o.timeoutSec * 1000 + 1000,
    keepAliveTimeout: 30_000,
  });

  const runAbort = new AbortController();
  const onUserAbort = (): void => runAbort.abort();
  if (o.signal?.aborted) runAbort.abort();
  else o.signal?.addEventListener('abort', onUserAbort, { once: true });

  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const durationMs = o.durationSec * 1000;
  const deadline = t0 + durationMs;
  // k6's gracefulStop: what is still in flight this long after the duration is interrupted.
  const graceTimer = setTimeout(() => runAbort.abort(), durationMs + o.gracefulStopSec * 1000);

  const records: RequestRecord[] = [];
  let issued = 0;
  let inFlight = 0;
  let peakInFlight = 0;
  let lastEnd = t0;

  const fire = async (i: number): Promise<void> => {
    inFlight++;
    peakInFlight = Math.max(peakInFlight, inFlight);
    const body = buildRequestBody(o, prompts, i);
    const startMs = performance.now() - t0;
    try {
      const outcome = await sendOne(o, agent, body, runAbort.signal);
      records.push({ index: i, model: (body.model as string | undefined) ?? null, startMs, ...outcome });
    } finally {
      inFlight--;
      lastEnd = Math.max(lastEnd, performance.now());
    }
  };

  let endAt = t0;
  let arrivals = 0;
  let dropped = 0;
  const lags: number[] = [];
  try {
    if (o.scenario === 'closed') {
      const worker = async (): Promise<void> => {
        while (!runAbort.signal.aborted && issued < o.maxRequests && performance.now() < deadline) {
          await fire(issued++);
        }
      };
      await Promise.all(Array.from({ length: o.concurrency }, worker));
    } else {
      const pending = new Set<Promise<void>>();
      const interval = 1000 / o.rate;
      for (;;) {
        if (runAbort.signal.aborted || issued >= o.maxRequests) break;
        const due = t0 + arrivals * interval;
        if (due >= deadline) break;
        const now = performance.now();
        if (now < due) {
          await sleep(due - now, runAbort.signal);
          continue;
        }
        arrivals++;
        lags.push(now - due);
        if (inFlight >= o.maxInFlight) {
          dropped++;
          continue;
        }
        const p = fire(issued++);
        pending.add(p);
        void p.finally(() => pending.delete(p));
      }
      await Promise.all(pending);
    }
    endAt = performance.now();
  } finally {
    clearTimeout(graceTimer);
    o.signal?.removeEventListener('abort', onUserAbort);
    await agent.close().catch(() => undefined);
  }

  const elapsedSec = (Math.max(endAt, lastEnd) - t0) / 1000;
  records.sort((a, b) => a.index - b.index);
  const stoppedBy = o.signal?.aborted ? 'signal' : issued >= o.maxRequests ? 'requests' : 'duration';
  const overall = groupReport(records, elapsedSec);
  const byModel: Record<string, GroupReport> = {};
  for (const m of o.models) byModel[m] = groupReport(records.filter((r) => r.model === m), elapsedSec);
  const errorSamples: Record<string, string> = {};
  for (const r of records) if (r.error && r.errorMessage && !(r.error in errorSamples)) errorSamples[r.error] = r.errorMessage;

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
    startedAt,
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
      promptCount: prompts.length,
      promptOrder: o.promptOrder,
      seed: o.seed,
    },
    elapsedSec,
    stoppedBy,
    arrivals: o.scenario === 'open' ? arrivals : issued,
    dropped,
    peakInFlight,
    schedulerLagMs: o.scenario === 'open' ? summarize(lags) : null,
    ...overall,
    errorSamples,
    byModel,
    thresholds,
    thresholdsPassed: thresholds.every((t) => t.passed),
  };
  if (o.recordRequests) report.requests = records;
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
