/**
 * The load generator's options, their defaults, and the one table that maps each option to its CLI
 * flag and to the environment variable of the k6 script (`loadtest/k6/completions.js`). The k6
 * script cannot import TypeScript, so the table is the contract both sides keep: a test reads the
 * script and this table and fails if an option exists on one side only or a default differs.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type Scenario = 'open' | 'closed';
export type PromptOrder = 'round-robin' | 'random';

/** Everything `runLoad` accepts. Only `url` is required; the rest have the defaults below. */
export interface LoadOptions {
  /** Base URL of the server (`http://127.0.0.1:8080`); `/v1/completions` is appended. Loopback only. */
  url: string;
  /**
   * The request's `model` field. Several models: request i goes to `models[i % n]` (same traffic,
   * interleaved, one report per model). Empty: the field is left out and the server picks its default.
   */
  model: string | string[];
  /** `open`: constant arrival rate (k6 constant-arrival-rate). `closed`: fixed concurrency (k6 constant-vus). */
  scenario: Scenario;
  /** Open model: arrivals per second (may be fractional). */
  rate: number;
  /** Closed model: requests in flight (k6 VUs). Open model: connections pre-opened (k6 preAllocatedVUs). */
  concurrency: number;
  /**
   * Open model: most requests in flight (k6 maxVUs); an arrival that finds this many in flight is
   * dropped and counted, as k6 counts `dropped_iterations`. Default: `concurrency` (k6's default too).
   */
  maxInFlight: number | undefined;
  /** Upper bound on requests sent (k6: MAX_REQUESTS, checked against the test-wide iteration number). */
  maxRequests: number;
  /** No request starts after this many seconds (k6 scenario `duration`). */
  durationSec: number;
  /** Requests still in flight this long after `durationSec` are aborted and counted as `interrupted` (k6 `gracefulStop`). */
  gracefulStopSec: number;
  /** Per-request timeout (k6 request param `timeout`); a request over it counts as a `timeout` error. */
  timeoutSec: number;
  /** `stream: true` and SSE parsing; adds TTFT, inter-token latency and time per output token. */
  stream: boolean;
  /** Streaming: ask for the final usage chunk (`stream_options.include_usage`). */
  includeUsage: boolean;
  maxTokens: number;
  temperature: number;
  /** Sends `ignore_eos: true` (vLLM extension) so every request generates exactly `maxTokens`. */
  ignoreEos: boolean;
  /** More body fields (top_p, seed, stop, ...). `prompt`, `model` and `stream` are refused: they have their own options. */
  extraBody: Record<string, unknown>;
  /** Prompt file, one prompt a line; blank lines and lines starting with `#` are skipped. */
  promptsFile: string;
  /** Prompts given directly (library use); when set, `promptsFile` is not read. */
  prompts: string[] | undefined;
  promptOrder: PromptOrder;
  /** Words of a preamble put before every prompt (a shared system prompt; request-body.ts); 0 = none. */
  sharedPrefixWords: number;
  /** Seed of `promptOrder: 'random'` (the same seed gives the same prompt for request i, in k6 too). */
  seed: number;
  /** k6-style thresholds: p95 of end-to-end latency of successful requests must stay under this (ms). */
  p95Ms: number;
  /** k6-style thresholds: failed/sent must stay under this. */
  maxErrorRate: number;
  /** Keep every request's measurements in `report.requests`. */
  recordRequests: boolean;
  /** Stops the run early (in-flight requests are aborted and counted as `interrupted`). */
  signal: AbortSignal | undefined;
  /** Sent as `Authorization: Bearer <key>` (a server started with --api-key); undefined: no header. */
  apiKey: string | undefined;
}

export type LoadOptionsInput = Partial<LoadOptions> & { url: string };

export const DEFAULT_PROMPTS_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'prompts.txt');

export const DEFAULTS = {
  model: [] as string[],
  scenario: 'closed' as Scenario,
  rate: 1,
  concurrency: 1,
  maxInFlight: undefined,
  maxRequests: 100,
  durationSec: 30,
  gracefulStopSec: 30,
  timeoutSec: 60,
  stream: false,
  includeUsage: true,
  maxTokens: 64,
  temperature: 0,
  ignoreEos: false,
  extraBody: {} as Record<string, unknown>,
  promptsFile: DEFAULT_PROMPTS_FILE,
  prompts: undefined,
  promptOrder: 'round-robin' as PromptOrder,
  sharedPrefixWords: 0,
  seed: 1,
  p95Ms: 10_000,
  maxErrorRate: 0.01,
  recordRequests: false,
  signal: undefined,
  apiKey: undefined,
} satisfies Omit<LoadOptions, 'url'>;

/**
 * One row per user-facing option. `flag`: the CLI's `--flag`; `env`: the k6 script's `__ENV` name
 * (null: Node only); `k6Default`: the default as the k6 script spells it (string, as env values are).
 */
export interface OptionSpec {
  key: keyof LoadOptions;
  flag: string;
  env: string | null;
  type: 'string' | 'boolean';
  /** A boolean flag that sets the option to false (`--no-usage` → includeUsage: false). */
  negate?: true;
  k6Default: string | null;
  help: string;
}

export const OPTION_TABLE: readonly OptionSpec[] = [
  { key: 'url', flag: 'url', env: 'BASE_URL', type: 'string', k6Default: 'http://127.0.0.1:8080', help: 'server base URL (loopback only)' },
  { key: 'model', flag: 'model', env: 'MODEL', type: 'string', k6Default: '', help: 'model field; comma-separated for several (round-robin)' },
  { key: 'scenario', flag: 'scenario', env: 'SCENARIO', type: 'string', k6Default: 'closed', help: 'open (constant arrival rate) | closed (fixed concurrency)' },
  { key: 'rate', flag: 'rate', env: 'RATE', type: 'string', k6Default: '1', help: 'open model: requests per second' },
  { key: 'concurrency', flag: 'concurrency', env: 'VUS', type: 'string', k6Default: '1', help: 'closed: requests in flight; open: pre-allocated' },
  { key: 'maxInFlight', flag: 'max-in-flight', env: 'MAX_VUS', type: 'string', k6Default: null, help: 'open model: in-flight cap, arrivals over it are dropped (default: concurrency)' },
  { key: 'maxRequests', flag: 'requests', env: 'MAX_REQUESTS', type: 'string', k6Default: '100', help: 'most requests sent' },
  { key: 'durationSec', flag: 'duration', env: 'DURATION', type: 'string', k6Default: '30s', help: 'no request starts after this (30s, 2m, 500ms or seconds)' },
  { key: 'gracefulStopSec', flag: 'graceful-stop', env: 'GRACEFUL_STOP', type: 'string', k6Default: '30s', help: 'in-flight requests are aborted this long after --duration' },
  { key: 'timeoutSec', flag: 'timeout', env: 'TIMEOUT', type: 'string', k6Default: '60s', help: 'per-request timeout' },
  { key: 'stream', flag: 'stream', env: 'STREAM', type: 'boolean', k6Default: 'false', help: 'stream (SSE): measures TTFT and inter-token latency' },
  { key: 'includeUsage', flag: 'no-usage', env: 'INCLUDE_USAGE', type: 'boolean', negate: true, k6Default: 'true', help: 'streaming: do not ask for the final usage chunk' },
  { key: 'maxTokens', flag: 'max-tokens', env: 'MAX_TOKENS', type: 'string', k6Default: '64', help: 'max_tokens' },
  { key: 'temperature', flag: 'temperature', env: 'TEMPERATURE', type: 'string', k6Default: '0', help: 'temperature' },
  { key: 'ignoreEos', flag: 'ignore-eos', env: 'IGNORE_EOS', type: 'boolean', k6Default: 'false', help: 'send ignore_eos: true (every request generates max_tokens)' },
  { key: 'extraBody', flag: 'extra-body', env: 'EXTRA_BODY', type: 'string', k6Default: '{}', help: 'JSON object merged into each request body' },
  { key: 'promptsFile', flag: 'prompts', env: 'PROMPTS', type: 'string', k6Default: '../prompts.txt', help: 'prompt file, one per line (default loadtest/prompts.txt)' },
  { key: 'promptOrder', flag: 'prompt-order', env: 'PROMPT_ORDER', type: 'string', k6Default: 'round-robin', help: 'round-robin | random' },
  { key: 'sharedPrefixWords', flag: 'shared-prefix-words', env: 'SHARED_PREFIX_WORDS', type: 'string', k6Default: '0', help: 'put the same preamble of this many words before every prompt (a shared system prompt: exercises the prefix cache)' },
  { key: 'seed', flag: 'seed', env: 'SEED', type: 'string', k6Default: '1', help: 'seed of --prompt-order random' },
  { key: 'p95Ms', flag: 'p95-ms', env: 'P95_MS', type: 'string', k6Default: '10000', help: 'threshold: p95 end-to-end latency (ms) must stay under' },
  { key: 'maxErrorRate', flag: 'max-error-rate', env: 'MAX_ERROR_RATE', type: 'string', k6Default: '0.01', help: 'threshold: error rate must stay under' },
  { key: 'apiKey', flag: 'api-key', env: 'API_KEY', type: 'string', k6Default: '', help: "bearer key for a server started with --api-key (default: none; the CLI also reads MOP_API_KEY)" },
];

export class LoadConfigError extends Error {
  override name = 'LoadConfigError';
}

/** `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds → seconds. */
export function parseDurationSec(value: string | number, what = 'duration'): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (!m) throw new LoadConfigError(`${what} must be a duration like 30s, 500ms, 2m or a number of seconds, not "${value}"`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return unit === 'ms' ? n / 1000 : unit === 'm' ? n * 60 : unit === 'h' ? n * 3600 : n;
}

/** Body fields that have their own option and so may not come through `extraBody`. */
export const RESERVED_BODY_FIELDS = ['prompt', 'model', 'stream'] as const;

export interface ResolvedLoadOptions extends Omit<LoadOptions, 'model' | 'maxInFlight'> {
  /** Model names, in request order; `[]`: no `model` field sent. */
  models: string[];
  maxInFlight: number;
  /** The full `/v1/completions` URL. */
  endpoint: string;
}

function check(cond: boolean, message: string): asserts cond {
  if (!cond) throw new LoadConfigError(message);
}

function positiveInt(name: string, v: number): void {
  check(Number.isInteger(v) && v >= 1, `${name} must be an integer ≥ 1, not ${v}`);
}

function positiveFinite(name: string, v: number): void {
  check(Number.isFinite(v) && v > 0, `${name} must be a finite number > 0, not ${v}`);
}

/** The endpoint for a base URL: `http://h:p` → `http://h:p/v1/completions` (a URL already ending so is kept). */
export function completionsEndpoint(base: string): string {
  const trimmed = base.replace(/\/+$/, '');
  return trimmed.endsWith('/v1/completions') ? trimmed : `${trimmed}/v1/completions`;
}

/** Fills defaults and validates; throws `LoadConfigError` naming the option. Does not check the URL's host. */
export function resolveLoadOptions(input: LoadOptionsInput): ResolvedLoadOptions {
  const o = { ...DEFAULTS, ...stripUndefined(input), url: input.url };
  const models = (Array.isArray(o.model) ? o.model : o.model.split(',')).map((m) => m.trim()).filter((m) => m !== '');
  check(o.scenario === 'open' || o.scenario === 'closed', `scenario must be "open" or "closed", not "${String(o.scenario)}"`);
  check(o.promptOrder === 'round-robin' || o.promptOrder === 'random', `promptOrder must be "round-robin" or "random", not "${String(o.promptOrder)}"`);
  positiveFinite('rate', o.rate);
  positiveInt('concurrency', o.concurrency);
  positiveInt('maxRequests', o.maxRequests);
  positiveFinite('durationSec', o.durationSec);
  check(Number.isFinite(o.gracefulStopSec) && o.gracefulStopSec >= 0, `gracefulStopSec must be a finite number ≥ 0, not ${o.gracefulStopSec}`);
  positiveFinite('timeoutSec', o.timeoutSec);
  positiveInt('maxTokens', o.maxTokens);
  check(Number.isFinite(o.temperature) && o.temperature >= 0, `temperature must be ≥ 0, not ${o.temperature}`);
  check(Number.isSafeInteger(o.seed), `seed must be an integer, not ${o.seed}`);
  check(Number.isInteger(o.sharedPrefixWords) && o.sharedPrefixWords >= 0 && o.sharedPrefixWords <= 100_000, `sharedPrefixWords must be an integer in [0, 100000], not ${o.sharedPrefixWords}`);
  check(Number.isFinite(o.p95Ms) && o.p95Ms > 0, `p95Ms must be > 0, not ${o.p95Ms}`);
  check(Number.isFinite(o.maxErrorRate) && o.maxErrorRate >= 0 && o.maxErrorRate <= 1, `maxErrorRate must be in [0, 1], not ${o.maxErrorRate}`);
  check(typeof o.extraBody === 'object' && o.extraBody !== null && !Array.isArray(o.extraBody), 'extraBody must be a JSON object');
  for (const f of RESERVED_BODY_FIELDS) {
    check(!(f in o.extraBody), `extraBody may not set "${f}": use the ${f === 'prompt' ? 'prompts' : f} option`);
  }
  const maxInFlight = o.maxInFlight ?? o.concurrency;
  positiveInt('maxInFlight', maxInFlight);
  if (o.prompts !== undefined) check(o.prompts.length > 0, 'prompts must not be empty');
  if (o.apiKey !== undefined) check(o.apiKey !== '' && !/\s/.test(o.apiKey), 'apiKey must be a non-empty key without white space');
  const { model: _model, ...rest } = o;
  return { ...rest, models, maxInFlight, endpoint: completionsEndpoint(o.url) };
}

function stripUndefined<T extends object>(obj: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
