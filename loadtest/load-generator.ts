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
import { Agent } from 'undici';
import { assertLoopbackUrl } from './loopback.ts';
import { resolveLoadOptions, type LoadOptionsInput, type ResolvedLoadOptions } from './options.ts';
import { loadPrompts } from './prompts.ts';
import { buildLoadReport, type LoadReport, type RequestRecord } from './report.ts';
import { buildRequestBody, sharedPrefix } from './request-body.ts';
import { sendOne } from './send-request.ts';

export { buildRequestBody } from './request-body.ts';
export { formatSummary } from './report.ts';
export type { ErrorKind, GroupReport, LatencyReport, LoadReport, RequestRecord, ThresholdResult } from './report.ts';

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

/** Connections for every request the run may have in flight; a request's timeout bounds its reads too. */
function connectionPool(o: ResolvedLoadOptions): Agent {
  return new Agent({
    connections: o.scenario === 'closed' ? o.concurrency : Math.max(o.concurrency, o.maxInFlight),
    pipelining: 1,
    headersTimeout: o.timeoutSec * 1000 + 1000,
    bodyTimeout: o.timeoutSec * 1000 + 1000,
    keepAliveTimeout: 30_000,
  });
}

/**
 * Runs one load test and returns its report. Throws `LoadConfigError` (before sending anything) for
 * a bad option, an unreadable prompt file or a non-loopback URL.
 */
export async function runLoad(input: LoadOptionsInput): Promise<LoadReport> {
  const o = resolveLoadOptions(input);
  assertLoopbackUrl(o.endpoint);
  const prompts = o.prompts ?? (await loadPrompts(o.promptsFile));
  const agent = connectionPool(o);

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

  const prefix = sharedPrefix(o.sharedPrefixWords);
  const fire = async (i: number): Promise<void> => {
    inFlight++;
    peakInFlight = Math.max(peakInFlight, inFlight);
    const body = buildRequestBody(o, prompts, i, prefix);
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

  records.sort((a, b) => a.index - b.index);
  return buildLoadReport(o, {
    startedAt,
    records,
    elapsedSec: (Math.max(endAt, lastEnd) - t0) / 1000,
    stoppedBy: o.signal?.aborted ? 'signal' : issued >= o.maxRequests ? 'requests' : 'duration',
    issued,
    arrivals,
    dropped,
    peakInFlight,
    lags,
    promptCount: prompts.length,
  });
}
