/**
 * Wiring: configuration → model → service (engine workers) → app → listening socket, and back
 * down again on shutdown (shutdown.ts). `mop serve` and the tests both start the server here.
 */
import { resolveTarget, type ResolvedTarget } from '../runtime/device/resolve.ts';
import { systemProbe } from '../runtime/device/probe.ts';
import { describeLoadedModel } from '../runtime/engine/open-model.ts';
import { prefixCacheUnsupported } from '../runtime/engine/prefix-cache-slots.ts';
import { defaultSamplingParams } from '../runtime/engine/sampling-params.ts';
import { defaultModelPath, loadModel } from '../runtime/model/load.ts';
import type { LoadedModel } from '../runtime/model/loaded-model.ts';
import { checkTokenizerMatchesModel, createTokenizer } from '../runtime/tokenizer/create.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { ModelService } from '../service/model-service.ts';
import type { ServedVariant } from '../service/variants/served-variant.ts';
import { StoreSync } from '../service/store-sync/store-sync.ts';
import { attachAdminEventSocket } from './admin-events.ts';
import { adminRoutes } from './admin-routes.ts';
import { createApp, type ServerState } from './app.ts';
import { type ChatTemplate, loadChatTemplate } from './chat-template.ts';
import { formatConfig, modelNameFromPath, type ServerConfig } from './config.ts';
import { baseUrl, type Listeners, listenAddress, openListeners, portOf } from './listeners.ts';
import { describeHostPolicy, type HostPolicy, hostPolicy } from './host-check.ts';
import { ServerMetrics } from './metrics.ts';
import { errorText, releaseEngines, shutdownOnce } from './shutdown.ts';
import { abortable, StartupAbortedError } from './startup-abort.ts';
import { TokenizeThread } from './tokenize-thread.ts';

export { shutdownMarginMs } from './shutdown.ts';

export interface StartOptions {
  /** A model loaded by the caller (benchmarks with synthetic weights); default: read config.model. */
  model?: LoadedModel;
  /** Start-up and error log lines (default: stderr). */
  log?: (line: string) => void;
  /** Store entries used within this long are not evicted (default 10 min; tests shorten it). */
  storeEvictGraceMs?: number;
  /** Each engine worker's entry module (default: the real one); fault tests wrap it. */
  engineWorker?: URL;
  /**
   * Aborting it (SIGTERM during start-up) stops start-up at the next step boundary (load, engine
   * start, listen, probe, store restore, start-up prune): what was started is released and
   * startServer rejects with StartupAbortedError.
   */
  signal?: AbortSignal;
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8000 (a wildcard host is reported as loopback). */
  url: string;
  port: number;
  /** Base URL of /admin and /admin/events: the --admin-port listener, or `url` without one. */
  adminUrl: string;
  /** Served variants, prune jobs, activation and unloading. */
  service: ModelService;
  metrics: ServerMetrics;
  state: ServerState;
  /**
   * Graceful shutdown: 503 for new work, in-flight requests finish (up to the grace period), socket
   * closed, engines released; done within the grace period plus shutdownMarginMs.
   */
  close(): Promise<void>;
}

type Log = (line: string) => void;

/** The model as it will be served: weights, tokenizer, the device chosen, the chat template. */
interface ServedModel {
  model: LoadedModel;
  tokenizer: Tokenizer;
  resolved: ResolvedTarget;
  chatTemplate: ChatTemplate;
}

export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  log('mop serve: configuration (flag / environment variable):');
  for (const line of formatConfig(config)) log(line);
  const signal = options.signal;
  /** Between two start-up steps: when shutdown was asked for, release what start-up holds and stop. */
  const stopIfAborted = async (next: string, release: () => Promise<void>) => {
    if (!signal?.aborted) return;
    await release();
    throw new StartupAbortedError(next);
  };

  const served = await loadServedModel(config, options, log);
  const sync = await openStoreSync(config, options, log);
  await stopIfAborted('the engine started', async () => {});

  const t0 = performance.now();
  const service = await startService(config, options, served, log);
  // The engine's session build cannot be cut short (no worker is terminated inside a native call): released once built.
  const release = async () => void (await releaseEngines(service, (e) => log(`releasing the engines failed: ${errorText(e)}`)));
  await stopIfAborted('listening', release);
  const dense = service.active!;
  logServing(config, served, dense, (performance.now() - t0) / 1000, log);

  // Every variant serves the loaded model's tokenizer (pruning keeps it).
  // A prompt's encode waits no longer than its request may.
  const tokenizeThread = new TokenizeThread({ tokenizer: served.model.tokenizer, chatTemplate: served.chatTemplate.text }, { timeoutMs: config.requestTimeoutMs, maxQueued: config.maxQueue, log });
  // Which Host names are answered, on every HTTP path and the admin WebSocket alike.
  const hosts = hostPolicy(config.host, config.allowedHosts, config.apiKeys);
  const { app, metrics, state } = buildApp(config, service, sync, served.chatTemplate, tokenizeThread, hosts, log);
  let listeners: Listeners;
  try {
    listeners = await openListeners(app.fetch, config);
  } catch (e) {
    await release();
    throw e;
  }
  // With --admin-port, /admin and its WebSocket live on a listener of their own; the API port answers 404 for them.
  const closeSocket = attachAdminEventSocket(listeners.admin ?? listeners.api, service.events, { adminToken: config.adminToken, maxClients: config.maxEventClients, hostPolicy: hosts, log });
  const closeEvents = () => {
    closeSocket();
    // The tokenizer thread goes with the admin socket, when shutdown begins.
    void tokenizeThread.close();
  };
  const reachable = announceListeners(config, listeners, dense.id, log);
  log(describeHostPolicy(hosts));
  const servers = listeners.admin ? [listeners.api, listeners.admin] : [listeners.api];
  const close = shutdownOnce({ service, state, servers, closeEvents, graceMs: config.shutdownGraceMs, log });

  await stopIfAborted('the probe generation', close);
  await probeReadiness(dense, state, signal, log);
  await stopIfAborted('restoring the model store', close);
  const recordedActive = sync ? await restoreStore(service, sync, dense.id, log) : null;
  await stopIfAborted('the start-up prune', close);
  if (config.pruneTarget !== undefined) await startupPrune(config, service, recordedActive, dense.id, close, log);
  await stopIfAborted('serving', close);

  return { ...reachable, service, metrics, state, close };
}

/** Read the model (or take the caller's), choose the device, load the chat template. */
async function loadServedModel(config: ServerConfig, options: StartOptions, log: Log): Promise<ServedModel> {
  const model = options.model ?? (await abortable(loadModel(config.model ?? defaultModelPath(), config.tokenizer !== undefined ? { tokenizerPath: config.tokenizer } : {}), options.signal, 'the model was loaded'));
  const tokenizer = createTokenizer(model.tokenizer);
  checkTokenizerMatchesModel(tokenizer, model.spec.vocabSize, model.path);
  const resolved = await abortable(resolveTarget(config.device, config.dtype, systemProbe(config.cudaAddon !== undefined ? { cudaAddon: config.cudaAddon } : {})), options.signal, 'the device was chosen');
  if (resolved.warning) log(`warning: ${resolved.warning}`);
  // A checkpoint's own quantized blocks serve int8 / int4 graphs only; float serving drops them.
  if (!resolved.target.weights) delete model.fileBlocks;
  const chatTemplate = loadChatTemplate(config.chatTemplate, model.chatTemplate);
  return { model, tokenizer, resolved, chatTemplate };
}

/** Opened before anything is served: a path that cannot be a store is a start-up error. */
async function openStoreSync(config: ServerConfig, options: StartOptions, log: Log): Promise<StoreSync | undefined> {
  if (config.modelStore === undefined) return undefined;
  const opening = StoreSync.open({
    root: config.modelStore,
    maxBytes: config.modelStoreMaxBytes,
    pollMs: config.modelStorePollMs,
    ...(options.storeEvictGraceMs !== undefined && { evictGraceMs: options.storeEvictGraceMs }),
    log,
  });
  return abortable(opening, options.signal, 'the model store was opened');
}

/** The dense model's engine worker, and the service around it; resolves when it can serve. */
function startService(config: ServerConfig, options: StartOptions, { model, tokenizer, resolved }: ServedModel, log: Log): Promise<ModelService> {
  return ModelService.start({
    model,
    tokenizer,
    id: config.servedModelName ?? modelNameFromPath(model.path),
    session: {
      maxBatch: config.maxBatch,
      maxContext: config.context ?? model.spec.maxContext,
      target: resolved.target,
      ...(config.threads !== undefined && { threads: config.threads }),
      batchPrefill: config.batchPrefill,
      spin: config.ortSpin,
      ...(config.cudaAddon !== undefined && { cudaAddon: config.cudaAddon }),
    },
    scheduling: { maxQueue: config.maxQueue, prefillChunk: config.prefillChunk, requestTimeoutMs: config.requestTimeoutMs, prefixCacheMb: config.prefixCacheMb },
    pruneThreads: config.pruneThreads,
    ...(config.pruneHeapMb !== undefined && { pruneHeapMb: config.pruneHeapMb }),
    pruneNice: config.pruneNice,
    maxJobHistory: config.maxJobHistory,
    restart: { maxRestarts: config.engineRestarts, windowMs: 60_000 },
    unloadGraceMs: config.shutdownGraceMs,
    ...(options.engineWorker && { engineWorker: options.engineWorker }),
    stallMs: config.engineStallMs,
    maxVariants: config.maxVariants,
    grammar: { maxBytes: config.maxGrammarBytes, compileTimeoutMs: config.grammarCompileTimeoutMs },
    log,
  });
}

/** What start-up settled on: the model and device, how weights run, threads, the chat template. */
function logServing(config: ServerConfig, { model, resolved, chatTemplate }: ServedModel, dense: ServedVariant, readySeconds: number, log: Log): void {
  log(`loaded ${describeLoadedModel(model, dense.maxContext, dense.target)} (${resolved.note}); engine worker ready in ${readySeconds.toFixed(1)} s`);
  const blocks = dense.weightBlocks;
  if (blocks) log(`${dense.target.weights} weights: ${blocks.fromFile} matrices run the checkpoint's own blocks, ${blocks.quantized} quantized at load${blocks.quantized > 0 && blocks.fromFile > 0 ? ' (the file holds them as float or another bit width, or the kernels need them widened)' : ''}`);
  log(`threads: serving ${config.threads ?? 'all cores'} per variant (--threads; idle pool threads ${config.ortSpin ? 'spin' : 'sleep'}, --ort-spin), pruning ${config.pruneThreads ?? 'all cores'} at nice ${config.pruneNice} (--prune-threads, --prune-nice); HTTP, metrics and health checks on the main thread`);
  const noPrefixCache = prefixCacheUnsupported(dense.target.device);
  if (config.prefixCacheMb === 0) log('prefix cache: off (--prefix-cache-mb 0)');
  else if (noPrefixCache) log(`prefix cache: off on ${dense.target.device}: ${noPrefixCache} (--prefix-cache-mb is ignored there)`);
  else log(`prefix cache: up to ${config.prefixCacheMb} MiB of prompt KV per variant, reused by prompts with the same start (--prefix-cache-mb)`);
  if (chatTemplate.source === 'default') {
    log("chat template: the checkpoint has none; /v1/chat/completions uses a plain 'role: content' transcript (set --chat-template / MOP_CHAT_TEMPLATE)");
  } else log(`chat template: from the ${chatTemplate.source === 'configured' ? '--chat-template option' : 'checkpoint'}`);
}

/** Metrics attached to the service, and the app (API and /admin) with the state /ready reports. */
function buildApp(config: ServerConfig, service: ModelService, sync: StoreSync | undefined, chatTemplate: ChatTemplate, tokenizeThread: TokenizeThread, hosts: HostPolicy, log: Log): { app: ReturnType<typeof createApp>; metrics: ServerMetrics; state: ServerState } {
  const metrics = new ServerMetrics(() => service.list(), sync && (() => service.storeSync));
  service.attachMetrics(metrics);
  service.events.subscribe((e) => e.type === 'model_removed' && metrics.forgetModel(e.id));
  const state: ServerState = { ready: false, draining: false };
  const app = createApp({
    admin: adminRoutes({ token: config.adminToken, service, unloadGraceMs: config.shutdownGraceMs, log, pruneDefaults: config.prune, draining: () => state.draining, dataDir: config.dataDir }),
    apiKeys: config.apiKeys,
    allowedOrigins: config.allowedOrigins,
    hostPolicy: hosts,
    service,
    chatTemplate,
    tokenizeThread,
    metrics,
    state,
    log,
    maxBodyBytes: config.maxBodyBytes,
    // Every generation of a request is submitted at once and waits in the queue until admitted.
    limits: { maxTokensDefault: config.maxTokensDefault, maxN: config.maxN, maxChoices: config.maxQueue, streamStallMs: config.streamStallMs },
  });
  return { app, metrics, state };
}

/** Log where the API and /admin are served; the URLs clients use. */
function announceListeners(config: ServerConfig, { api, admin }: Listeners, denseId: string, log: Log): { url: string; port: number; adminUrl: string } {
  const port = portOf(api);
  const url = baseUrl(config.host, port);
  const adminUrl = admin ? baseUrl(config.host, portOf(admin)) : url;
  const adminWhere = admin ? `on ${listenAddress(config.host, portOf(admin))} only (--admin-port; /admin on port ${port} answers 404)` : `on port ${port}`;
  log(config.adminToken === undefined ? `admin API: off (set --admin-token / MOP_ADMIN_TOKEN to enable /admin and /admin/events${admin ? `, served ${adminWhere}` : ''})` : `admin API: on (/admin/*, WebSocket /admin/events; bearer token required) ${adminWhere}`);
  log(`listening on ${listenAddress(config.host, port)} (model id '${denseId}')`);
  return { url, port, adminUrl };
}

/** Ready only once the engine has actually produced a token; a failed probe leaves /ready at 503. */
async function probeReadiness(dense: ServedVariant, state: ServerState, signal: AbortSignal | undefined, log: Log): Promise<void> {
  try {
    await probe(dense, signal);
    state.ready = true;
    log('ready: probe generation succeeded');
  } catch (e) {
    if (!signal?.aborted) log(`not ready: probe generation failed: ${errorText(e)}`);
  }
}

/** One greedy token from BOS: proves engine worker, scheduler and sampler work end to end. `signal` cancels it. */
async function probe(v: ServedVariant, signal: AbortSignal | undefined): Promise<void> {
  const bos = v.tokenizer.bosTokenId ?? v.tokenizer.encode('a', { addBos: false })[0] ?? 0;
  const handle = v.scheduler.submit({ promptTokens: [bos], maxTokens: 1, sampling: defaultSamplingParams({ temperature: 0 }), ignoreEos: true, ...(signal && { signal }) });
  for await (const e of handle.events) {
    if (e.type === 'finish' && e.completionTokens !== 1) throw new Error(`probe finished with reason ${e.reason} after ${e.completionTokens} tokens`);
  }
}

/**
 * Model store: the dense model serves (and /ready is 200) while the recorded variants load. The
 * active variant the manifest records, or null; a failed restore is logged and the dense model serves.
 */
async function restoreStore(service: ModelService, sync: StoreSync, denseId: string, log: Log): Promise<string | null> {
  try {
    return (await service.attachStore(sync)).recordedActive;
  } catch (e) {
    log(`model store: restoring from ${sync.root} failed: ${e instanceof Error ? e.message : String(e)}; serving '${denseId}'`);
    return null;
  }
}

/**
 * Start-up prune: the dense model serves meanwhile; the pruned one takes over when it is ready.
 * With a store, a result already there is loaded instead of pruned, and a choice the manifest
 * records (an operator's activation) wins over the declarative target's activation. A prune that
 * cannot start (bad calibration file, say) fails the start-up, and the socket closes.
 */
async function startupPrune(config: ServerConfig, service: ModelService, recordedActive: string | null, denseId: string, close: () => Promise<void>, log: Log): Promise<void> {
  try {
    const job = await service.jobs.start({ ...config.prune, target: config.pruneTarget!, activate: recordedActive === null });
    log(`start-up prune: job ${job.id} (${config.prune.strategy} to ${config.pruneTarget}); serving '${denseId}' until it finishes`);
  } catch (e) {
    await close();
    throw e;
  }
}
