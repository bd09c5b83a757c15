/**
 * Test helpers: a server on 127.0.0.1:0 with the bundled model, JSON posting, the OpenAI error
 * shape check, and a minimal parser of the Prometheus text format.
 */
import assert from 'node:assert/strict';
import { defaultServerConfig, type ServerConfig } from '../../../src/server/config.ts';
import { type RunningServer, type StartOptions, startServer } from '../../../src/server/main.ts';

/** One ORT thread: the test machine has two cores, and the client needs one. */
export async function startTestServer(overrides: Partial<ServerConfig> = {}, options: StartOptions = {}): Promise<RunningServer> {
  const log = process.env.MOP_TEST_LOG ? (line: string) => process.stderr.write(line + '\n') : () => {};
  return startServer({ ...defaultServerConfig, host: '127.0.0.1', port: 0, threads: 1, shutdownGraceMs: 10_000, ...overrides }, { log, ...options });
}

/** An admin API request with a bearer token and an optional JSON body. */
export function adminRequest(s: RunningServer, token: string, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(s.url + path, { method, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, ...(body !== undefined && { body: JSON.stringify(body) }) });
}

export function postJson(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...init });
}

/** The JSON body of a successful (2xx) response; any other status fails with the body in the message. */
export async function okJson<T = Record<string, unknown>>(res: Response | Promise<Response>): Promise<T> {
  const r = await res;
  const text = await r.text();
  assert.ok(r.status < 300, `status ${r.status}: ${text}`);
  return JSON.parse(text) as T;
}

/** Asserts `res` is an OpenAI error with this status (and param, when given); returns the error object. */
export async function assertOpenAIError(
  res: Response,
  status: number,
  param?: string | null,
): Promise<{ message: string; type: string; param: string | null; code: string | null }> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${text}`);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  const body = JSON.parse(text) as { error: { message: string; type: string; param: string | null; code: string | null } };
  assert.deepEqual(Object.keys(body), ['error']);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
  assert.equal(typeof body.error.type, 'string');
  if (param !== undefined) assert.equal(body.error.param, param, `param of: ${body.error.message}`);
  return body.error;
}

/** Samples of the Prometheus text format, keyed `name{label="v",...}` with labels sorted. */
export type Samples = Map<string, number>;

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( \d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses the exposition text strictly: every line is a comment, blank, or a well-formed sample. */
export function parseMetrics(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = SAMPLE.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    const labels = [...(m[3] ?? '').matchAll(LABEL)].map((l) => `${l[1]}="${l[2]}"`).sort();
    const value = Number(m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : m[4]);
    // Prometheus parses values with Go's ParseFloat: NaN in any case (prom-client writes "Nan").
    assert.ok(!Number.isNaN(value) || /^nan$/i.test(m[4]!), `bad value in: ${line}`);
    out.set(labels.length ? `${m[1]}{${labels.join(',')}}` : m[1]!, value);
  }
  return out;
}

export async function scrape(url: string): Promise<Samples> {
  const res = await fetch(url + '/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  return parseMetrics(await res.text());
}

/** Polls `check` until it returns true or `ms` pass. */
export async function waitFor(check: () => boolean | Promise<boolean>, ms = 3000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
