/**
 * k6 load test of POST /v1/completions (OpenAI-compatible), non-streaming or streaming, in an open
 * model (constant arrival rate) or a closed model (fixed concurrency).
 *
 *   k6 run -e BASE_URL=http://127.0.0.1:8080 -e MODEL=dense -e SCENARIO=closed -e VUS=8 loadtest/k6/completions.js
 *   k6 run -e SCENARIO=open -e RATE=4 -e MAX_VUS=32 -e STREAM=true loadtest/k6/completions.js
 *
 * Every option is an environment variable (`-e NAME=value`); each one has the same meaning and
 * default as an option of the Node load generator (loadtest/load-generator.ts; the mapping is the
 * OPTION_TABLE of loadtest/options.ts, and test/loadtest/k6-scripts.test.ts fails if they drift):
 *
 *   BASE_URL       server base URL, loopback only; /v1/completions is appended   (--url)
 *   MODEL          `model` field; comma-separated: request i goes to model i % n   (--model)
 *   SCENARIO       open = constant-arrival-rate, closed = constant-vus              (--scenario)
 *   RATE           open: requests per second (may be fractional)                    (--rate)
 *   VUS            closed: VUs (requests in flight); open: preAllocatedVUs          (--concurrency)
 *   MAX_VUS        open: maxVUs; an arrival with no free VU is a dropped iteration  (--max-in-flight)
 *   MAX_REQUESTS   most requests sent (test-wide iteration number)                  (--requests)
 *   DURATION       scenario duration (30s, 2m, 500ms or seconds)                    (--duration)
 *   GRACEFUL_STOP  scenario gracefulStop                                            (--graceful-stop)
 *   TIMEOUT        per-request timeout                                              (--timeout)
 *   STREAM         true: `stream: true`, read the SSE body                          (--stream)
 *   INCLUDE_USAGE  streaming: ask for the final usage chunk                         (--no-usage)
 *   MAX_TOKENS, TEMPERATURE, IGNORE_EOS, EXTRA_BODY (JSON object)                   (--max-tokens ...)
 *   PROMPTS        prompt file, one per line (relative paths: to this script)       (--prompts)
 *   PROMPT_ORDER   round-robin | random;  SEED: seed of random                      (--prompt-order, --seed)
 *   SHARED_PREFIX_WORDS  the same preamble of this many words before every prompt  (--shared-prefix-words)
 *   P95_MS         threshold: p(95) of completion_e2e_ms must stay under            (--p95-ms)
 *   MAX_ERROR_RATE threshold: rate of completion_errors must stay under             (--max-error-rate)
 *
 * Streaming: k6's http module cannot read a response body as it arrives (it has no SSE support),
 * so a streaming request here reads the whole SSE body and then checks it: it ends with
 * `data: [DONE]`, carries no error event, and how many content chunks and (with INCLUDE_USAGE)
 * completion tokens it had. TIME TO FIRST TOKEN AND INTER-TOKEN LATENCY CANNOT BE MEASURED
 * CLIENT-SIDE IN k6. `completion_ttfb_ms` (k6's `timings.waiting`) is the time to the first
 * response byte, which is not the first token when the server sends its headers (or an empty
 * chunk) before generating anything. Use the Node generator (`--stream`) or the server's own
 * Prometheus histograms for TTFT/ITL.
 */
import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';
import { Counter, Rate, Trend } from 'k6/metrics';

// ---- configuration (init context) -------------------------------------------------------------

function env(name, fallback) {
  const v = __ENV[name];
  return v === undefined || v === null || v === '' ? fallback : String(v);
}

function bad(name, value, what) {
  throw new Error('completions.js: ' + name + ' must be ' + what + ', not "' + value + '"');
}

function number(name, fallback, min, minInclusive) {
  const raw = env(name, fallback);
  const v = Number(raw);
  if (!isFinite(v) || (minInclusive ? v < min : v <= min)) bad(name, raw, 'a number ' + (minInclusive ? '>= ' : '> ') + min);
  return v;
}

function integer(name, fallback, min) {
  const raw = env(name, fallback);
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) bad(name, raw, 'an integer >= ' + min);
  return v;
}

function bool(name, fallback) {
  const raw = env(name, fallback).toLowerCase();
  if (raw === 'true' || raw === '1' || raw === 'yes') return true;
  if (raw === 'false' || raw === '0' || raw === 'no') return false;
  return bad(name, raw, 'true or false');
}

/** 30s, 500ms, 2m, 1h or a bare number of seconds -> milliseconds (as the Node generator parses them). */
function durationMs(name, fallback) {
  const raw = env(name, fallback);
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(raw);
  if (!m) return bad(name, raw, 'a duration like 30s, 500ms, 2m or a number of seconds');
  const n = Number(m[1]);
  const unit = m[2] || 's';
  return Math.round(unit === 'ms' ? n : unit === 'm' ? n * 60000 : unit === 'h' ? n * 3600000 : n * 1000);
}

/** Load tests here only target this machine: 127.0.0.0/8, localhost, [::1]. */
function loopbackEndpoint(base) {
  const m = /^(https?):\/\/(\[[^\]]*\]|[^\/:?#]*)(:\d+)?([\/?#].*)?$/i.exec(base);
  if (!m) return bad('BASE_URL', base, 'an http:// or https:// URL');
  const host = m[2].toLowerCase();
  const loopback =
    host === 'localhost' ||
    /\.localhost$/.test(host) ||
    host === '[::1]' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  if (!loopback) {
    throw new Error(
      'completions.js: refusing to load-test ' + host + ': only loopback targets are allowed (127.0.0.0/8, localhost, [::1])',
    );
  }
  const trimmed = base.replace(/\/+$/, '');
  return /\/v1\/completions$/.test(trimmed) ? trimmed : trimmed + '/v1/completions';
}

const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080');
const ENDPOINT = loopbackEndpoint(BASE_URL);
const MODELS = env('MODEL', '')
  .split(',')
  .map((m) => m.trim())
  .filter((m) => m !== '');
const SCENARIO = env('SCENARIO', 'closed');
if (SCENARIO !== 'open' && SCENARIO !== 'closed') bad('SCENARIO', SCENARIO, 'open or closed');
const RATE = number('RATE', '1', 0, false);
const VUS = integer('VUS', '1', 1);
const MAX_VUS = integer('MAX_VUS', String(VUS), 1);
const MAX_REQUESTS = integer('MAX_REQUESTS', '100', 1);
const DURATION_MS = durationMs('DURATION', '30s');
const GRACEFUL_STOP_MS = durationMs('GRACEFUL_STOP', '30s');
const TIMEOUT_MS = durationMs('TIMEOUT', '60s');
// A server started with --api-key wants one of its keys on every /v1 request.
const API_KEY = env('API_KEY', '');
const STREAM = bool('STREAM', 'false');
const INCLUDE_USAGE = bool('INCLUDE_USAGE', 'true');
const MAX_TOKENS = integer('MAX_TOKENS', '64', 1);
const TEMPERATURE = number('TEMPERATURE', '0', 0, true);
const IGNORE_EOS = bool('IGNORE_EOS', 'false');
const EXTRA_BODY = (function () {
  const raw = env('EXTRA_BODY', '{}');
  try {
    return JSON.parse(raw);
  } catch (e) {
    return bad('EXTRA_BODY', raw, 'a JSON object');
  }
})();
if (EXTRA_BODY === null || typeof EXTRA_BODY !== 'object' || Array.isArray(EXTRA_BODY)) bad('EXTRA_BODY', env('EXTRA_BODY', '{}'), 'a JSON object');
['prompt', 'model', 'stream'].forEach((f) => {
  if (Object.prototype.hasOwnProperty.call(EXTRA_BODY, f)) bad('EXTRA_BODY', f, 'free of prompt/model/stream (they have their own options)');
});
const PROMPTS_FILE = env('PROMPTS', '../prompts.txt');
const PROMPT_ORDER = env('PROMPT_ORDER', 'round-robin');
if (PROMPT_ORDER !== 'round-robin' && PROMPT_ORDER !== 'random') bad('PROMPT_ORDER', PROMPT_ORDER, 'round-robin or random');
const SEED = integer('SEED', '1', Number.MIN_SAFE_INTEGER);
const SHARED_PREFIX_WORDS = integer('SHARED_PREFIX_WORDS', '0', 0);
if (SHARED_PREFIX_WORDS > 100000) bad('SHARED_PREFIX_WORDS', SHARED_PREFIX_WORDS, 'at most 100000');
const P95_MS = number('P95_MS', '10000', 0, false);
const MAX_ERROR_RATE = number('MAX_ERROR_RATE', '0.01', 0, true);

/** One prompt a line; trimmed; blank lines and # comments skipped (as loadtest/prompts.ts). */
const PROMPTS = new SharedArray('prompts', function () {
  const list = open(PROMPTS_FILE)
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && l.charAt(0) !== '#');
  if (list.length === 0) throw new Error('completions.js: prompt file ' + PROMPTS_FILE + ' has no prompts');
  return list;
});

// ---- scenarios, thresholds --------------------------------------------------------------------

const SCENARIOS = {
  // Open model: arrivals at RATE/s whatever the latency; an arrival that finds all MAX_VUS busy is
  // counted in k6's dropped_iterations (the Node generator's `dropped`).
  open: {
    executor: 'constant-arrival-rate',
    // k6 wants an integer rate: a fractional one is expressed per 1000 s.
    rate: Number.isInteger(RATE) ? RATE : Math.round(RATE * 1000),
    timeUnit: Number.isInteger(RATE) ? '1s' : '1000s',
    duration: DURATION_MS + 'ms',
    preAllocatedVUs: Math.min(VUS, MAX_VUS),
    maxVUs: MAX_VUS,
    gracefulStop: GRACEFUL_STOP_MS + 'ms',
  },
  // Closed model: VUS requests in flight, each VU sending its next request when the last one ends.
  closed: {
    executor: 'constant-vus',
    vus: VUS,
    duration: DURATION_MS + 'ms',
    gracefulStop: GRACEFUL_STOP_MS + 'ms',
  },
};

const MODEL_TAGS = MODELS.length > 0 ? MODELS : ['default'];

const thresholds = {
  completion_e2e_ms: ['p(95)<' + P95_MS],
  completion_errors: ['rate<' + MAX_ERROR_RATE],
};
// Per-model submetrics, so the end-of-test summary shows each model's latency and errors.
MODEL_TAGS.forEach((m) => {
  thresholds['completion_e2e_ms{model:' + m + '}'] = ['p(95)<' + P95_MS];
  thresholds['completion_errors{model:' + m + '}'] = ['rate<' + MAX_ERROR_RATE];
});

export const options = {
  scenarios: { [SCENARIO]: SCENARIOS[SCENARIO] },
  thresholds: thresholds,
  tags: { endpoint: 'completions', stream: String(STREAM) },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
};

// ---- metrics ----------------------------------------------------------------------------------

/** End-to-end latency of successful requests (k6 timings.duration: sending + waiting + receiving). */
const e2e = new Trend('completion_e2e_ms', true);
/** Time to the first response byte. Streaming: NOT the time to the first token (see the header). */
const ttfb = new Trend('completion_ttfb_ms', true);
const tokensPerRequest = new Trend('completion_tokens_per_request');
const contentChunks = new Trend('completion_content_chunks');
const completionTokens = new Counter('completion_tokens');
const requestsSent = new Counter('completion_requests');
/** One sample per request: true when it failed (any kind). */
const errors = new Rate('completion_errors');
/** Failures by kind (tag `kind`): http_<status>, network, timeout, stream_error, incomplete_stream, bad_response. */
const errorKinds = new Counter('completion_error_kinds');

// ---- one request ------------------------------------------------------------------------------

function mix32(x) {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

/** The prompt of request i: the same function as loadtest/prompts.ts. */
function promptIndex(i, n) {
  if (PROMPT_ORDER === 'random') return mix32((mix32(SEED >>> 0) ^ i) >>> 0) % n;
  return i % n;
}

/** The words of the shared preamble: the same list as loadtest/request-body.ts. */
const PREFIX_WORDS = ['the', 'assistant', 'answers', 'every', 'question', 'with', 'care', 'and', 'a', 'short', 'clear', 'story', 'about', 'small', 'animals', 'in', 'green', 'fields', 'near', 'old', 'town'];

/** The preamble before every prompt (a shared system prompt): the same function as loadtest/request-body.ts. */
function sharedPrefix(words) {
  if (words === 0) return '';
  const out = [];
  for (let i = 0; i < words; i++) out.push(PREFIX_WORDS[mix32(i + 1) % PREFIX_WORDS.length]);
  return out.join(' ') + '.\n\n';
}
const SHARED_PREFIX = sharedPrefix(SHARED_PREFIX_WORDS);

/** The body of request i: the same fields, in the same order, as the Node generator's buildRequestBody. */
function buildBody(i) {
  const body = {};
  if (MODELS.length > 0) body.model = MODELS[i % MODELS.length];
  body.prompt = SHARED_PREFIX + PROMPTS[promptIndex(i, PROMPTS.length)];
  body.max_tokens = MAX_TOKENS;
  body.temperature = TEMPERATURE;
  if (IGNORE_EOS) body.ignore_eos = true;
  Object.assign(body, EXTRA_BODY);
  body.stream = STREAM;
  if (STREAM && INCLUDE_USAGE) body.stream_options = { include_usage: true };
  return body;
}

/** The `data:` payloads of a whole SSE body. */
function sseData(text) {
  const events = [];
  let data = null;
  const lines = text.split(/\r\n|\r|\n/);
  for (let k = 0; k < lines.length; k++) {
    const line = lines[k];
    if (line === '') {
      if (data !== null) events.push(data.join('\n'));
      data = null;
    } else if (line.indexOf('data:') === 0) {
      let v = line.slice(5);
      if (v.charAt(0) === ' ') v = v.slice(1);
      (data = data || []).push(v);
    }
  }
  if (data !== null) events.push(data.join('\n'));
  return events;
}

function chunkText(chunk) {
  let text = '';
  const choices = chunk && chunk.choices;
  if (!Array.isArray(choices)) return text;
  for (let k = 0; k < choices.length; k++) {
    const c = choices[k] || {};
    if (typeof c.text === 'string') text += c.text;
    else if (c.delta && typeof c.delta.content === 'string') text += c.delta.content;
  }
  return text;
}

/** { error: kind | null, tokens, chunks } of a 2xx response. */
function readBody(res) {
  const body = typeof res.body === 'string' ? res.body : '';
  if (!STREAM) {
    let json;
    try {
      json = JSON.parse(body);
    } catch (e) {
      return { error: 'bad_response', tokens: 0, chunks: 0, done: false };
    }
    if (!json || !Array.isArray(json.choices)) return { error: 'bad_response', tokens: 0, chunks: 0, done: false };
    const u = json.usage && typeof json.usage.completion_tokens === 'number' ? json.usage.completion_tokens : 0;
    return { error: null, tokens: u, chunks: 0, done: false };
  }
  let done = false;
  let chunks = 0;
  let usage = null;
  const events = sseData(body);
  for (let k = 0; k < events.length && !done; k++) {
    if (events[k].trim() === '[DONE]') {
      done = true;
      break;
    }
    let chunk;
    try {
      chunk = JSON.parse(events[k]);
    } catch (e) {
      return { error: 'bad_response', tokens: 0, chunks: chunks, done: false };
    }
    if (chunk && chunk.error) return { error: 'stream_error', tokens: 0, chunks: chunks, done: false };
    if (chunk && chunk.usage && typeof chunk.usage.completion_tokens === 'number') usage = chunk.usage.completion_tokens;
    if (chunkText(chunk) !== '') chunks++;
  }
  if (!done) return { error: 'incomplete_stream', tokens: 0, chunks: chunks, done: false };
  return { error: null, tokens: usage === null ? chunks : usage, chunks: chunks, done: true };
}

export default function () {
  const i = exec.scenario.iterationInTest;
  if (i >= MAX_REQUESTS) {
    // MAX_REQUESTS bounds the run in requests. k6 cannot end a scenario early without aborting the
    // whole test (exit code 108), so the remaining iterations send nothing until DURATION ends; a
    // closed-model VU naps so it does not spin.
    if (SCENARIO === 'closed') sleep(1);
    return;
  }
  const body = buildBody(i);
  const tags = { model: body.model || 'default' };
  const res = http.post(ENDPOINT, JSON.stringify(body), {
    headers: Object.assign({ 'Content-Type': 'application/json', Accept: STREAM ? 'text/event-stream' : 'application/json' }, API_KEY ? { Authorization: 'Bearer ' + API_KEY } : {}),
    timeout: TIMEOUT_MS + 'ms',
    tags: tags,
    responseType: 'text',
  });
  requestsSent.add(1, tags);

  let kind = null;
  let out = { error: null, tokens: 0, chunks: 0, done: false };
  if (res.status === 0) kind = res.error_code === 1050 ? 'timeout' : 'network';
  else if (res.status < 200 || res.status >= 300) kind = 'http_' + res.status;
  else {
    out = readBody(res);
    kind = out.error;
  }

  const checks = { 'status is 2xx': () => res.status >= 200 && res.status < 300, 'response is complete': () => kind === null };
  if (STREAM) checks['stream ends with [DONE]'] = () => out.done;
  check(res, checks, tags);

  errors.add(kind !== null, tags);
  if (kind !== null) {
    errorKinds.add(1, { model: tags.model, kind: kind });
    return;
  }
  e2e.add(res.timings.duration, tags);
  ttfb.add(res.timings.waiting, tags);
  completionTokens.add(out.tokens, tags);
  tokensPerRequest.add(out.tokens, tags);
  if (STREAM) contentChunks.add(out.chunks, tags);
}
