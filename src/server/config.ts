/**
 * Server configuration: every knob is a CLI flag and an environment variable. `PORT` and `HOST`
 * keep their conventional names (container platforms set them); everything else is `MOP_*`.
 * Values arrive as strings (from argv or env) and are parsed and range-checked here, so a bad value
 * fails at start-up with one line naming both the flag and the variable.
 */
import { basename, extname } from 'node:path';
import { type DeviceRequest, type DtypeRequest, parseDeviceRequest, parseDtypeRequest } from '../runtime/device/device.ts';
import { defaultPruneSettings, parsePruneValue, type PruneRecipe, pruneOptions, flagValueSyntax } from '../service/prune/prune-options.ts';

export interface ServerConfig {
  /** TCP port; 0 picks a free one (tests). */
  port: number;
  host: string;
  /** Checkpoint path; undefined = the bundled stories260K. */
  model: string | undefined;
  /** Tokenizer file for llama2.c checkpoints; undefined = beside the model. */
  tokenizer: string | undefined;
  /** Concurrent sequences in the running batch (KV slots). */
  maxBatch: number;
  /** Requests waiting for a slot before new ones get 429. */
  maxQueue: number;
  /** Context per sequence; undefined = the model's own. */
  context: number | undefined;
  /** Prompt tokens prefilled per scheduling step (bounds how long a long prompt stalls decodes). */
  prefillChunk: number;
  /** Fresh prompts that arrive together are prefilled in one run (CPU; docs/architecture.md). */
  batchPrefill: boolean;
  /** MiB of prompt KV each variant keeps for reuse by prompts with the same start; 0 = off. */
  prefixCacheMb: number;
  /** Idle ONNX Runtime pool threads of serving sessions spin instead of sleeping. */
  ortSpin: boolean;
  /** Per-request deadline from submission; 0 = none. */
  requestTimeoutMs: number;
  /** A stream whose client reads nothing for this long is given up (generations cancelled, connection closed); 0 = never. */
  streamStallMs: number;
  /** `max_tokens` of a /v1/completions request that omits it (OpenAI's default is 16). */
  maxTokensDefault: number;
  /** Largest accepted request body; larger ones get 413. */
  maxBodyBytes: number;
  /** On SIGTERM, how long in-flight requests may run before they are aborted. */
  shutdownGraceMs: number;
  /** Bearer token for /admin/* (the MoP admin API); undefined = admin API disabled. */
  adminToken: string | undefined;
  /** The `model` id clients use; undefined = derived from the checkpoint's file name. */
  servedModelName: string | undefined;
  /** ONNX Runtime intra-op threads; undefined = all cores. */
  threads: number | undefined;
  /** Execution device: auto (best that works here), cpu, webgpu, cuda or cuda-native. */
  device: DeviceRequest;
  /** The native CUDA addon file of `cuda-native`; undefined = build/cuda/mop_cuda.node. */
  cudaAddon: string | undefined;
  /** Element type of weights, activations and KV cache: auto (float16 on GPU), float32 or float16. */
  dtype: DtypeRequest;
  /** Jinja chat template (a file path, or the template itself); overrides the checkpoint's. */
  chatTemplate: string | undefined;
  /** Largest `n` (choices per prompt) a request may ask for. */
  maxN: number;
  /** Prune the loaded model to this ratio at start-up (served dense until the pruned one is ready); undefined = no. */
  pruneTarget: number | undefined;
  /** The recipe of start-up prunes and the defaults of admin prunes (`--prune-*`, the shared prune option table). */
  prune: Omit<PruneRecipe, 'target'>;
  /** ONNX Runtime threads of the prune worker; undefined = all cores. Serving keeps `threads`. */
  pruneThreads: number | undefined;
  /** Restarts of a variant's engine worker allowed within a minute; one more death and the variant is unavailable. */
  engineRestarts: number;
  /** Directory of the persistent model store (pruned variants + the manifest replicas follow); undefined = none. */
  modelStore: string | undefined;
  /** Evict least recently used unreferenced store entries above this size; undefined = no limit. */
  modelStoreMaxBytes: number | undefined;
  /** How often the store's manifest is polled for other replicas' changes. */
  modelStorePollMs: number;
  /** JavaScript heap limit of the prune worker in MiB; undefined = Node's default. */
  pruneHeapMb: number | undefined;
  /** Nice value of the prune worker's threads (Linux): 0 = same priority as serving. */
  pruneNice: number;
  /** Bearer keys accepted on /v1 (any one of them); undefined = /v1 open, as vLLM without --api-key. */
  apiKeys: string[] | undefined;
  /** Origins a browser may call the API from (CORS); undefined = no CORS headers (browsers refuse cross-site reads). */
  allowedOrigins: string[] | undefined;
  /** Names requests may address the server by (Host), besides IP addresses and loopback names; ['*'] = any; undefined = any, but only those on a loopback listener without an API key (host-check.ts). */
  allowedHosts: string[] | undefined;
  /** Server-side files an admin request names (calibration, recovery_data) must lie under this directory; undefined = the bundled data/. */
  dataDir: string | undefined;
  /** Most model variants served at once (dense included); a prune or restore past it gets 409. */
  maxVariants: number;
  /** A decode/prefill step (or a worker heartbeat) older than this marks the variant stalled (503 engine_stalled). */
  engineStallMs: number;
  /** Serve /admin and /admin/events on this port instead of the API port; undefined = on the API port. */
  adminPort: number | undefined;
  /** Most /admin/events WebSocket clients at once. */
  maxEventClients: number;
  /** Finished prune jobs kept in GET /admin/prune (their full reports stay in the model store). */
  maxJobHistory: number;
  /** Largest structured-output grammar (schema, regex, EBNF, choices) in UTF-8 bytes; larger: 400. */
  maxGrammarBytes: number;
  /** Longest a new grammar may take to compile (in a disposable thread, before the engine compiles it); longer: 400. */
  grammarCompileTimeoutMs: number;
}

export const defaultServerConfig: Readonly<ServerConfig> = {
  port: 8000,
  host: '0.0.0.0',
  model: undefined,
  tokenizer: undefined,
  maxBatch: 8,
  maxQueue: 64,
  context: undefined,
  prefillChunk: 256,
  batchPrefill: true,
  prefixCacheMb: 256,
  ortSpin: false,
  requestTimeoutMs: 600_000,
  streamStallMs: 30_000,
  maxTokensDefault: 16,
  maxBodyBytes: 4 * 1024 * 1024,
  shutdownGraceMs: 30_000,
  adminToken: undefined,
  servedModelName: undefined,
  threads: undefined,
  device: 'auto',
  cudaAddon: undefined,
  dtype: 'auto',
  chatTemplate: undefined,
  maxN: 16,
  pruneTarget: undefined,
  prune: defaultPruneSettings(),
  pruneThreads: undefined,
  engineRestarts: 3,
  modelStore: undefined,
  modelStoreMaxBytes: undefined,
  modelStorePollMs: 5000,
  pruneHeapMb: undefined,
  pruneNice: 10,
  apiKeys: undefined,
  allowedOrigins: undefined,
  allowedHosts: undefined,
  dataDir: undefined,
  maxVariants: 8,
  engineStallMs: 60_000,
  adminPort: undefined,
  maxEventClients: 16,
  maxJobHistory: 32,
  maxGrammarBytes: 64 * 1024,
  grammarCompileTimeoutMs: 2000,
};

/** A bad flag or environment value; the message names both and says what is expected. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** One knob: its CLI flag (commander syntax), environment variable, parser and place in the config. */
export interface ConfigKnob {
  /** Commander's attribute name: the flag's long name camel-cased (e.g. --max-batch → maxBatch). */
  key: string;
  flag: string;
  env: string;
  description: string;
  /** Throws a plain Error with what was expected; the caller adds flag and env names. */
  parse(raw: string): unknown;
  /** Where the value goes (default: config[key]). */
  assign?(config: ServerConfig, value: unknown): void;
  /** The value as configured, for the start-up log (default: config[key]). */
  read?(config: ServerConfig): unknown;
  /** Never printed in full (secrets). */
  secret?: boolean;
}

const int =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (raw: string): number => {
    const n = Number(raw.trim());
    if (raw.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new Error(`expected an integer in [${min}, ${max}], got '${raw}'`);
    return n;
  };

const fraction = (raw: string): number => {
  const n = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 0.9) throw new Error(`expected a fraction in (0, 0.9], got '${raw}'`);
  return n;
};

const oneOf =
  (...choices: string[]) =>
  (raw: string): string => {
    if (!choices.includes(raw)) throw new Error(`expected one of ${choices.join(', ')}, got '${raw}'`);
    return raw;
  };

const text = (raw: string): string => {
  if (raw === '') throw new Error('expected a non-empty value');
  return raw;
};

/** A comma-separated list of non-empty items (keys, origins). */
const list = (raw: string): string[] => {
  const items = raw.split(',').map((s) => s.trim());
  if (items.length === 0 || items.some((s) => s === '')) throw new Error(`expected a comma-separated list of non-empty values, got '${raw}'`);
  return items;
};

/** Secrets short enough to guess are refused, not warned about. */
const MIN_SECRET_CHARS = 16;

const secret = (raw: string): string => {
  if (raw.length < MIN_SECRET_CHARS) throw new Error(`expected at least ${MIN_SECRET_CHARS} characters (got ${raw.length}); generate one with: openssl rand -hex 32`);
  return raw;
};

const secretList = (raw: string): string[] => {
  const keys = list(raw);
  keys.forEach(secret);
  return keys;
};

const origins = (raw: string): string[] => {
  const items = list(raw);
  for (const o of items) {
    if (o !== '*' && !/^https?:\/\/[^/\s]+$/.test(o)) throw new Error(`expected '*' or origins like https://app.example.com (scheme and host, no path), got '${o}'`);
  }
  return items;
};

const hostNames = (raw: string): string[] => {
  const items = list(raw);
  for (const h of items) {
    if (h !== '*' && !/^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?\.?$/i.test(h)) throw new Error(`expected '*' or host names like api.example.com (no scheme, port or path), got '${h}'`);
  }
  return items;
};

export const configKnobs: readonly ConfigKnob[] = [
  { key: 'port', flag: '--port <n>', env: 'PORT', description: 'TCP port to listen on', parse: int(0, 65535) },
  { key: 'host', flag: '--host <address>', env: 'HOST', description: 'address to listen on', parse: text },
  { key: 'model', flag: '-m, --model <path>', env: 'MOP_MODEL', description: 'checkpoint: llama2.c .bin, GGUF file or Hugging Face directory (default: bundled stories260K)', parse: text },
  { key: 'tokenizer', flag: '--tokenizer <path>', env: 'MOP_TOKENIZER', description: 'tokenizer file for llama2.c checkpoints (default: beside the model)', parse: text },
  { key: 'maxBatch', flag: '--max-batch <n>', env: 'MOP_MAX_BATCH', description: 'concurrent sequences in the running batch', parse: int(1, 1024) },
  { key: 'maxQueue', flag: '--max-queue <n>', env: 'MOP_MAX_QUEUE', description: 'requests waiting for a slot (an engine\'s; for a large prompt, a tokenizer thread\'s) before 429', parse: int(1) },
  { key: 'context', flag: '--context <n>', env: 'MOP_CONTEXT', description: "context length per sequence (default: the model's)", parse: int(2) },
  { key: 'prefillChunk', flag: '--prefill-chunk <n>', env: 'MOP_PREFILL_CHUNK', description: 'prompt tokens prefilled per scheduling step', parse: int(1) },
  { key: 'prefixCacheMb', flag: '--prefix-cache-mb <n>', env: 'MOP_PREFIX_CACHE_MB', description: 'MiB of prompt KV cache each variant keeps so later prompts with the same start skip its prefill (0 = off; CPU and CUDA-provider sessions)', parse: int(0, 1 << 20) },
  { key: 'batchPrefill', flag: '--batch-prefill <on|off>', env: 'MOP_BATCH_PREFILL', description: 'prefill fresh prompts that arrive together in one run (CPU): more prompt tokens/s, later first tokens within a burst', parse: (raw) => oneOf('on', 'off')(raw) === 'on' },
  { key: 'requestTimeoutMs', flag: '--request-timeout-ms <ms>', env: 'MOP_REQUEST_TIMEOUT_MS', description: 'per-request deadline (0 = none)', parse: int(0) },
  { key: 'streamStallMs', flag: '--stream-stall-ms <ms>', env: 'MOP_STREAM_STALL_MS', description: 'a stream whose client reads nothing for this long is given up: its generations cancelled, the connection closed (0 = never)', parse: int(0) },
  { key: 'maxTokensDefault', flag: '--max-tokens-default <n>', env: 'MOP_MAX_TOKENS_DEFAULT', description: 'max_tokens when a completions request omits it', parse: int(1) },
  { key: 'maxBodyBytes', flag: '--max-body-bytes <n>', env: 'MOP_MAX_BODY_BYTES', description: 'largest request body (413 beyond)', parse: int(1) },
  { key: 'shutdownGraceMs', flag: '--shutdown-grace-ms <ms>', env: 'MOP_SHUTDOWN_GRACE_MS', description: 'on SIGTERM, time in-flight requests get to finish', parse: int(0) },
  { key: 'adminToken', flag: '--admin-token <token>', env: 'MOP_ADMIN_TOKEN', description: 'bearer token for /admin/* (unset = admin API off; at least 16 characters)', parse: secret, secret: true },
  // Commander files --api-key under apiKey; the config holds the list as apiKeys.
  { key: 'apiKey', flag: '--api-key <keys>', env: 'MOP_API_KEY', description: 'comma-separated bearer keys accepted on /v1 (unset = /v1 needs no key; each at least 16 characters)', parse: secretList, secret: true, assign: (config, value) => (config.apiKeys = value as string[]), read: (config) => config.apiKeys },
  { key: 'allowedOrigins', flag: '--allowed-origins <origins>', env: 'MOP_ALLOWED_ORIGINS', description: "comma-separated origins browsers may call the API from, or '*' (unset = no CORS)", parse: origins },
  {
    key: 'allowedHosts',
    flag: '--allowed-hosts <names>',
    env: 'MOP_ALLOWED_HOSTS',
    description: "comma-separated names clients address the server by (the Host header; IP addresses and loopback names always pass), or '*' (unset = any, except on a loopback --host without --api-key: only IP addresses and loopback names, a defence against DNS rebinding)",
    parse: hostNames,
  },
  { key: 'dataDir', flag: '--data-dir <dir>', env: 'MOP_DATA_DIR', description: 'directory that files named in admin requests (calibration, recovery_data) must lie under (default: the bundled data/ directory)', parse: text },
  { key: 'maxVariants', flag: '--max-variants <n>', env: 'MOP_MAX_VARIANTS', description: 'most model variants served at once, dense included (a prune or restore past it: 409)', parse: int(1, 256) },
  { key: 'engineStallMs', flag: '--engine-stall-ms <ms>', env: 'MOP_ENGINE_STALL_MS', description: 'an engine step or heartbeat older than this marks the variant stalled: 503 engine_stalled, /ready and then /health fail', parse: int(100) },
  { key: 'adminPort', flag: '--admin-port <n>', env: 'MOP_ADMIN_PORT', description: 'serve /admin and /admin/events on this port only, not on --port (unset = on --port)', parse: int(0, 65535) },
  { key: 'maxEventClients', flag: '--max-event-clients <n>', env: 'MOP_MAX_EVENT_CLIENTS', description: 'most /admin/events WebSocket clients at once', parse: int(1, 10_000) },
  { key: 'maxJobHistory', flag: '--max-job-history <n>', env: 'MOP_MAX_JOB_HISTORY', description: 'finished prune jobs listed by /admin/prune (full reports stay in the model store)', parse: int(1, 10_000) },
  { key: 'maxGrammarBytes', flag: '--max-grammar-bytes <n>', env: 'MOP_MAX_GRAMMAR_BYTES', description: 'largest structured-output grammar a request may send (JSON schema, regex, EBNF or choices, in bytes; 400 beyond)', parse: int(1) },
  { key: 'grammarCompileTimeoutMs', flag: '--grammar-compile-timeout-ms <ms>', env: 'MOP_GRAMMAR_COMPILE_TIMEOUT_MS', description: "longest a new structured-output grammar may take to compile, in a disposable thread before the engine compiles it (400 beyond); bounds the engine's pause for it", parse: int(1, 600_000) },
  { key: 'servedModelName', flag: '--served-model-name <id>', env: 'MOP_SERVED_MODEL_NAME', description: "model id clients use (default: the checkpoint's file name)", parse: text },
  { key: 'device', flag: '--device <device>', env: 'MOP_DEVICE', description: 'execution device: auto, cpu, webgpu, cuda or cuda-native (auto: a working GPU, else the CPU)', parse: parseDeviceRequest },
  { key: 'cudaAddon', flag: '--cuda-addon <file>', env: 'MOP_CUDA_ADDON', description: "the native CUDA addon that --device cuda-native loads (default: build/cuda/mop_cuda.node, made by 'npm run build:cuda')", parse: text },
  { key: 'dtype', flag: '--dtype <type>', env: 'MOP_DTYPE', description: 'weights/activations/KV type: auto (float16 on GPU, float32 on CPU), float32, float16, or int8 / int4 block-quantized weights (CPU)', parse: parseDtypeRequest },
  { key: 'threads', flag: '--threads <n>', env: 'MOP_THREADS', description: 'ONNX Runtime intra-op threads (default: all cores)', parse: int(1, 1024) },
  { key: 'ortSpin', flag: '--ort-spin <on|off>', env: 'MOP_ORT_SPIN', description: "idle ONNX Runtime pool threads of each variant's decode session spin instead of sleeping (ONNX Runtime's default): faster steps where cores are spare, stolen cores where they are not", parse: (raw) => oneOf('on', 'off')(raw) === 'on' },
  { key: 'chatTemplate', flag: '--chat-template <file>', env: 'MOP_CHAT_TEMPLATE', description: "Jinja chat template file (default: the checkpoint's, else a plain 'role: content' transcript)", parse: text },
  { key: 'maxN', flag: '--max-n <n>', env: 'MOP_MAX_N', description: 'largest n (choices per prompt) a request may ask for', parse: int(1, 1024) },
  { key: 'pruneThreads', flag: '--prune-threads <n>', env: 'MOP_PRUNE_THREADS', description: 'ONNX Runtime threads of the prune worker (default: all cores); serving keeps --threads', parse: int(1, 1024) },
  { key: 'engineRestarts', flag: '--engine-restarts <n>', env: 'MOP_ENGINE_RESTARTS', description: "restarts of a variant's engine worker allowed within a minute before the variant is marked unavailable", parse: int(0, 100) },
  { key: 'pruneNice', flag: '--prune-nice <n>', env: 'MOP_PRUNE_NICE', description: 'nice value of the prune worker threads on Linux (0-19; higher yields the CPU to serving and health checks)', parse: int(0, 19) },
  { key: 'pruneHeapMb', flag: '--prune-heap-mb <n>', env: 'MOP_PRUNE_HEAP_MB', description: "JavaScript heap limit of the prune worker in MiB (default: Node's); a prune past it fails its job, not the server", parse: int(4, 1 << 20) },
  { key: 'modelStore', flag: '--model-store <dir>', env: 'MOP_MODEL_STORE', description: 'persistent model store: pruned variants and the serving state survive restarts and reach every replica sharing the directory', parse: text },
  { key: 'modelStoreMaxBytes', flag: '--model-store-max-bytes <n>', env: 'MOP_MODEL_STORE_MAX_BYTES', description: 'evict least recently used store entries no replica serves above this many bytes (default: no limit)', parse: int(0) },
  { key: 'modelStorePollMs', flag: '--model-store-poll-ms <ms>', env: 'MOP_MODEL_STORE_POLL_MS', description: "how often the store's manifest is read for other replicas' changes", parse: int(50, 600_000) },
  ...pruneKnobs(),
];

/** `--prune-<name>` / MOP_PRUNE_<NAME> for every option of the shared prune table (target: start-up prune). */
function pruneKnobs(): ConfigKnob[] {
  return pruneOptions.map((o) => {
    const key = `prune${o.name.replace(/(^|-)(\w)/g, (_, _d, c: string) => c.toUpperCase())}`;
    const isTarget = o.key === 'target';
    return {
      key,
      flag: `--prune-${o.name} ${flagValueSyntax(o)}`,
      env: o.env,
      description: isTarget ? 'prune to this ratio at start-up; the dense model serves until the pruned one takes over' : `${o.description} (start-up and admin prunes)`,
      parse: (raw: string) => parsePruneValue(o, raw, 'value'),
      assign: (config: ServerConfig, value: unknown) => {
        if (isTarget) config.pruneTarget = value as number;
        else config.prune = { ...config.prune, [o.key]: value };
      },
      read: (config: ServerConfig) => (isTarget ? config.pruneTarget : config.prune[o.key as Exclude<keyof PruneRecipe, 'target'>]),
    };
  });
}

/**
 * Build a config from raw strings keyed by config key (what commander collects from flags and
 * their env fallbacks); absent keys keep their defaults.
 */
export function resolveConfig(raw: Partial<Record<string, string | undefined>>): ServerConfig {
  const config: ServerConfig = { ...defaultServerConfig, prune: { ...defaultServerConfig.prune } };
  for (const knob of configKnobs) {
    const value = raw[knob.key];
    if (value === undefined) continue;
    let parsed: unknown;
    try {
      parsed = knob.parse(value);
    } catch (e) {
      throw new ConfigError(`${knob.flag.replace(/^-\w, /, '').split(' ')[0]} / ${knob.env}: ${(e as Error).message.replace(/^value: /, '')}`);
    }
    if (knob.assign) knob.assign(config, parsed);
    else (config as unknown as Record<string, unknown>)[knob.key] = parsed;
  }
  return config;
}

/** The model id derived from a checkpoint path: its file (or directory) name without extension. */
export function modelNameFromPath(path: string): string {
  const base = basename(path.replace(/[/\\]+$/, ''));
  const ext = extname(base);
  return ext === '.bin' || ext === '.gguf' ? base.slice(0, -ext.length) : base;
}

/** The start-up log block: every knob with its value and where to set it; secrets redacted. */
export function formatConfig(config: ServerConfig): string[] {
  return configKnobs.map((k) => {
    const v = k.read ? k.read(config) : (config as unknown as Record<string, unknown>)[k.key];
    const shown = v === undefined ? '(default)' : k.secret ? '<redacted>' : JSON.stringify(v);
    return `  ${k.env.padEnd(24)} ${shown}`;
  });
}
