/**
 * One request to the server under a fault, and how it ended: a status (with the OpenAI error code),
 * a stream that ended with finish_reason or with an error event or was cut, a connection that
 * failed before any status, or nothing within the bounded wait ("never answered": the failure
 * bench:faults exists to find). Each request on a fresh connection (a server that crashed or
 * closed must not be blamed for a stale keep-alive socket). Loopback only.
 */
import { Agent, request } from 'undici';
import { assertLoopbackUrl } from '../../loadtest/loopback.ts';
import { sseData } from '../lib/sse-data.ts';

/** How an exchange ended. `no-status` and `no-end` are the never-answered ones. */
export type End =
  /** A complete non-streaming answer (any status). */
  | 'body'
  /** A stream (status 200) whose choices ended with finish_reason. */
  | 'finish'
  /** A stream that ended with an `error` event. */
  | 'error-event'
  /** A stream or body closed before its end (no finish_reason, no error event). */
  | 'cut'
  /** The connection failed or was closed before any status. */
  | 'connection'
  /** The client itself hung up as the scenario asked (disconnect mid-stream). */
  | 'client-abort'
  /** No status within the wait. */
  | 'no-status'
  /** A status, but the body or stream did not end within the wait. */
  | 'no-end';

export interface Outcome {
  /** performance.now() when it was sent. */
  atMs: number;
  /** Until it ended (or the wait ran out). */
  ms: number;
  /** HTTP status; 0 when none came. */
  status: number;
  /** `error.code` of an error body or error event. */
  code?: string;
  end: End;
  /** finish_reason of each choice (JSON or stream). */
  finishReasons?: string[];
  /** Stream events received. */
  chunks?: number;
  /** Connection error message, for the report's notes. */
  detail?: string;
  /** A non-streaming answer's body (first 4 KiB), for callers that read it (admin calls). */
  text?: string;
}

export function neverAnswered(o: Outcome): boolean {
  return o.end === 'no-status' || o.end === 'no-end';
}

export interface RequestSpec {
  path: string;
  body: Record<string, unknown>;
  method?: 'POST' | 'GET' | 'PUT' | 'DELETE';
  headers?: Record<string, string>;
  /** Most ms to wait for the status. */
  statusWaitMs: number;
  /** Most ms from sending to the end of the body or stream. */
  endWaitMs: number;
  /** Hang up after this many stream events (disconnect mid-stream). */
  abortAfterChunks?: number;
  /** Hang up after this many ms if it has not ended (a client that gives up waiting). */
  abortAfterMs?: number;
  /** Reuse connections (soak: tens of thousands of requests to a healthy server); default a fresh one each. */
  keepAlive?: boolean;
}

const agent = new Agent({ pipelining: 0, connections: null });
const keepAliveAgent = new Agent({ pipelining: 1, connections: 64 });

export async function send(baseUrl: string, spec: RequestSpec): Promise<Outcome> {
  assertLoopbackUrl(baseUrl);
  const atMs = performance.now();
  const ac = new AbortController();
  let expired: 'status' | 'end' | undefined;
  let timer = setTimeout(() => {
    expired = 'status';
    ac.abort();
  }, spec.statusWaitMs);
  let hungUp = false;
  const hangUp =
    spec.abortAfterMs === undefined
      ? undefined
      : setTimeout(() => {
          hungUp = true;
          ac.abort();
        }, spec.abortAfterMs);
  const done = (o: Omit<Outcome, 'atMs' | 'ms'>): Outcome => {
    clearTimeout(timer);
    clearTimeout(hangUp);
    if (hungUp && o.end !== 'body' && o.end !== 'finish' && o.end !== 'error-event') return { atMs, ms: performance.now() - atMs, status: o.status, end: 'client-abort', ...(o.chunks !== undefined && { chunks: o.chunks }) };
    return { atMs, ms: performance.now() - atMs, ...o };
  };
  let res;
  try {
    res = await request(baseUrl + spec.path, {
      method: spec.method ?? 'POST',
      dispatcher: spec.keepAlive ? keepAliveAgent : agent,
      reset: !spec.keepAlive,
      signal: ac.signal,
      headers: { 'content-type': 'application/json', ...spec.headers },
      ...(spec.method !== 'GET' && spec.method !== 'DELETE' && { body: JSON.stringify(spec.body) }),
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  } catch (e) {
    if (expired) return done({ status: 0, end: 'no-status' });
    return done({ status: 0, end: 'connection', detail: errorText(e) });
  }
  clearTimeout(timer);
  timer = setTimeout(
    () => {
      expired = 'end';
      res.body.destroy();
    },
    Math.max(0, spec.endWaitMs - (performance.now() - atMs)),
  );
  const status = res.statusCode;
  const isStream = status === 200 && (res.headers['content-type'] ?? '').toString().startsWith('text/event-stream');
  if (!isStream) {
    try {
      const text = await res.body.text();
      if (expired) return done({ status, end: 'no-end' });
      return done({ status, end: 'body', ...bodyFields(text), text: text.slice(0, 4096) });
    } catch (e) {
      return done({ status, end: expired ? 'no-end' : 'cut', detail: errorText(e) });
    }
  }
  const events = new StreamEvents();
  try {
    for await (const data of sseData(res.body)) {
      events.add(data);
      if (spec.abortAfterChunks !== undefined && events.chunks >= spec.abortAfterChunks && !events.ended) {
        res.body.destroy();
        return done({ status, end: 'client-abort', chunks: events.chunks });
      }
    }
  } catch (e) {
    if (!expired && !events.ended) return done({ status, end: 'cut', chunks: events.chunks, detail: errorText(e) });
  }
  return done({ status, ...events.outcome(!expired) });
}

/** What a stream's events said: how many came, the error code of an error event, the finish reasons. */
export class StreamEvents {
  chunks = 0;
  code: string | undefined;
  readonly finishReasons: string[] = [];

  /** One event's data payload ([DONE] is not an event of the answer). */
  add(data: string): void {
    if (data === '[DONE]') return;
    this.chunks++;
    const f = eventFields(data);
    if (f.code !== undefined) this.code = f.code;
    this.finishReasons.push(...f.finishReasons);
  }

  /** An error event or a finish reason has arrived: the answer has its end. */
  get ended(): boolean {
    return this.code !== undefined || this.finishReasons.length > 0;
  }

  /** How the stream ended: `complete` false when it did not end within the wait. */
  outcome(complete: boolean): Pick<Outcome, 'end' | 'code' | 'chunks' | 'finishReasons'> {
    const { chunks, finishReasons, code } = this;
    if (!complete) return { end: 'no-end', chunks, finishReasons, ...(code !== undefined && { code }) };
    if (code !== undefined) return { end: 'error-event', code, chunks, finishReasons };
    return { end: finishReasons.length > 0 ? 'finish' : 'cut', chunks, finishReasons };
  }
}

/** error.code or finish reasons of a JSON body. */
export function bodyFields(text: string): { code?: string; finishReasons?: string[] } {
  try {
    const json = JSON.parse(text) as { error?: { code?: unknown; type?: unknown }; choices?: { finish_reason?: unknown }[] };
    if (json.error) return { code: String(json.error.code ?? json.error.type ?? 'error') };
    if (Array.isArray(json.choices)) return { finishReasons: json.choices.map((c) => String(c.finish_reason)) };
  } catch {
    // not JSON
  }
  return {};
}

/** An SSE data payload: its error code, or the finish reasons it carries. */
export function eventFields(data: string): { code?: string; finishReasons: string[] } {
  try {
    const json = JSON.parse(data) as { error?: { code?: unknown; type?: unknown }; choices?: { finish_reason?: unknown }[] };
    if (json.error) return { code: String(json.error.code ?? json.error.type ?? 'error'), finishReasons: [] };
    return { finishReasons: (json.choices ?? []).map((c) => c.finish_reason).filter((r): r is string => typeof r === 'string') };
  } catch {
    return { finishReasons: [] };
  }
}

function errorText(e: unknown): string {
  const err = e as { code?: string; message?: string; cause?: { code?: string } };
  return err.cause?.code ?? err.code ?? err.message ?? String(e);
}
