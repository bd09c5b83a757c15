/**
 * One request of a load test, measured from the client: end-to-end latency, time to the first
 * response byte and (streaming) to the first content chunk, the gaps between content chunks, and
 * completion tokens; or the kind of failure (see ErrorKind).
 */
import { performance } from 'node:perf_hooks';
import { type Agent, type Dispatcher, request } from 'undici';
import type { ResolvedLoadOptions } from './options.ts';
import type { ErrorKind, RequestRecord } from './report.ts';
import { SseParser } from './sse.ts';

/** The outcome of one request before it is stamped with index/model/start. */
export type Outcome = Omit<RequestRecord, 'index' | 'model' | 'startMs'>;

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

export async function sendOne(
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
    if (o.stream) await readStream(res.body, out, t0);
    else await readJson(res.body, out);
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

type Body = Dispatcher.ResponseData['body'];

/** A non-streaming answer: its usage, or a bad_response failure. */
async function readJson(body: Body, out: Outcome): Promise<void> {
  const text = await body.text();
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
}

/** An SSE answer read to `[DONE]`: TTFT and the gaps between content chunks (from `t0`), and tokens. */
async function readStream(body: Body, out: Outcome, t0: number): Promise<void> {
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
  for await (const buf of body) {
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
