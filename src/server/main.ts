/**
 * Wiring: configuration → model → service (engine workers) → app → listening socket, and back
 * down again on shutdown (stop taking requests, let in-flight ones finish within the grace period,
 * close the socket, release the engines). `mop serve` and the tests both start the server here.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { resolveTarget } from '../runtime/device/resolve.ts';
import { systemProbe } from '../runtime/device/probe.ts';
import { describeLoadedModel } from '../runtime/engine/open-model.ts';
import { defaultSamplingParams } from '../runtime/engine/sampling-params.ts';
import { defaultModelPath, loadModel } from '../runtime/model/load.ts';
import type { LoadedModel } from '../runtime/model/loaded-model.ts';
import { checkTokenizerMatchesModel, createTokenizer } from '../runtime/tokenizer/create.ts';
import { ModelService } from '../service/model-service.ts';
import type { ServedVariant } from '../service/engine/served-variant.ts';
import { StoreSync } from '../service/store-sync/store-sync.ts';
import { attachAdminEventSocket } from './admin-events.ts';
import { servedOn } from './admin-port.ts';
import { adminRoutes } from './admin-routes.ts';
import { createApp, type ServerState } from './app.ts';
import { loadChatTemplate } from './chat-template.ts';
import { formatConfig, modelNameFromPath, type ServerConfig } from './config.ts';
import { ServerMetrics } from './metrics.ts';
import { settlesWithin } from './bounded-wait.ts';
import { abortable, StartupAbortedError } from './startup-abort.ts';

/**
 * How long past --shutdown-grace-ms a shutdown may take at most: an engine's answer to the drain
 * (it finishes the step it is in), then releasing the engines and closing the socket. A part that
 * does not answer within its share is logged and left behind; the process exits anyway.
 */
export const shutdownMarginMs = 8000;
/** Past the grace period, how long the drain waits for engines to answer (one model step). */
const drainAnswerMs = 5000;
/** How long the engines get to free their sessions, and open connections to finish, after the drain. */
const releaseMs = 2000;

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
  const nothing = async () => {};

  const model = options.model ?? (await abortable(loadModel(config.model ?? defaultModelPath(), config.tokenizer !== undefined ? { tokenizerPath: config.tokenizer } : {}), signal, 'the model was loaded'));
  const tokenizer = createTokenizer(model.tokenizer);
  checkTokenizerMatchesModel(tokenizer, model.spec.vocabSize, model.path);
  const resolved = await abortable(resolveTarget(config.device, config.dtype, systemProbe()), signal, 'the device was chosen');
  if (resolved.warning) log(`warning: ${resolved.warning}`);
  // A checkpoint's own quantized blocks serve int8 / int4 graphs only; float serving drops them.
  if (!resolved.target.weights) delete model.fileBlocks;
  const chatTemplate = loadChatTemplate(config.chatTemplate, model.chatTemplate);

  // Opened before anything is served: a path that cannot be a store is a start-up error.
  const store = config.modelStore === undefined ? undefined : await abortable(StoreSync.open({
    root: config.modelStore,
    maxBytes: config.modelStoreMaxBytes,
    pollMs: config.modelStorePollMs,
    ...(options.storeEvictGraceMs !== undefined && { evictGraceMs: options.storeEvictGraceMs }),
    log,
  }), signal, 'the model store was opened');
  await stopIfAborted('the engine started', nothing);

  const t0 = performance.now();
  const service = await ModelService.start({
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
    },
    scheduling: { maxQueue: config.maxQueue, prefillChunk: config.prefillChunk, requestTimeoutMs: config.requestTimeoutMs },
    pruneThreads: config.pruneThreads,
    ...(config.pruneHeapMb !== undefined && { pruneHeapMb: config.pruneHeapMb }),
    pruneNice: config.pruneNice,
    maxJobHistory: config.maxJobHistory,
    restart: { maxRestarts: config.engineRestarts, windowMs: 60_000 },
    unloadGraceMs: config.shutdownGraceMs,
    ...(options.engineWorker && { engineWorker: options.engineWorker }),
    stallMs: config.engineStallMs,
    maxVariants: config.maxVariants,
    log,
  });
  // The engine's session build cannot be cut short (no worker is terminated inside a native call): released once built.
  const releaseEngines = async () => void (await settlesWithin(service.release(), releaseMs, (e) => log(`releasing the engines failed: ${errorText(e)}`)));
  await stopIfAborted('listening', releaseEngines);
  const dense = service.active!;
  log(`loaded ${describeLoadedModel(model, dense.maxContext, dense.target)} (${resolved.note}); engine worker ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const blocks = dense.weightBlocks;
  if (blocks) log(`${dense.target.weights} weights: ${blocks.fromFile} matrices run the checkpoint's own blocks, ${blocks.quantized} quantized at load${blocks.quantized > 0 && blocks.fromFile > 0 ? ' (the file holds them as float or another bit width, or the kernels need them widened)' : ''}`);
  log(`threads: serving ${config.threads ?? 'all cores'} per variant (--threads; idle pool threads ${config.ortSpin ? 'spin' : 'sleep'}, --ort-spin), pruning ${config.pruneThreads ?? 'all cores'} at nice ${config.pruneNice} (--prune-threads, --prune-nice); HTTP, metrics and health checks on the main thread`);
  if (chatTemplate.source === 'default') {
    log("chat template: the checkpoint has none; /v1/chat/completions uses a plain 'role: content' transcript (set --chat-template / MOP_CHAT_TEMPLATE)");
  } else log(`chat template: from the ${chatTemplate.source === 'configured' ? '--chat-template option' : 'checkpoint'}`);

  const metrics = new ServerMetrics(() => service.list(), store && (() => service.storeSync));
  service.attachMetrics(metrics);
  service.events.subscribe((e) => e.type === 'model_removed' && metrics.forgetModel(e.id));
  const state: ServerState = { ready: false, draining: false };
  const app = createApp({
    admin: adminRoutes({ token: config.adminToken, service, unloadGraceMs: config.shutdownGraceMs, log, pruneDefaults: config.prune, draining: () => state.draining, dataDir: config.dataDir }),
    apiKeys: config.apiKeys,
    allowedOrigins: config.allowedOrigins,
    service,
    chatTemplate,
    metrics,
    state,
    log,
    maxBodyBytes: config.maxBodyBytes,
    // Every generation of a request is submitted at once and waits in the queue until admitted.
    limits: { maxTokensDefault: config.maxTokensDefault, maxN: config.maxN, maxChoices: config.maxQueue },
  });

  // With --admin-port, /admin and its WebSocket live on a listener of their own; the API port answers 404 for them.
  let server: Server | undefined;
  let adminServer: Server | undefined;
  try {
    server = await listen(config.adminPort === undefined ? app.fetch : servedOn('api', app.fetch), config.port, config.host);
    if (config.adminPort !== undefined) adminServer = await listen(servedOn('admin', app.fetch), config.adminPort, config.host);
  } catch (e) {
    if (server) await closeServer(server, 0);
    await releaseEngines();
    throw e;
  }
  const servers = adminServer ? [server, adminServer] : [server];
  const closeEvents = attachAdminEventSocket(adminServer ?? server, service.events, { adminToken: config.adminToken, maxClients: config.maxEventClients, log });
  const port = (server.address() as AddressInfo).port;
  const url = baseUrl(config.host, port);
  const adminUrl = adminServer ? baseUrl(config.host, (adminServer.address() as AddressInfo).port) : url;
  const adminWhere = adminServer ? `on ${listenAddress(config.host, (adminServer.address() as AddressInfo).port)} only (--admin-port; /admin on port ${port} answers 404)` : `on port ${port}`;
  log(config.adminToken === undefined ? `admin API: off (set --admin-token / MOP_ADMIN_TOKEN to enable /admin and /admin/events${adminServer ? `, served ${adminWhere}` : ''})` : `admin API: on (/admin/*, WebSocket /admin/events; bearer token required) ${adminWhere}`);
  log(`listening on ${listenAddress(config.host, port)} (model id '${dense.id}')`);

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      state.draining = true;
      log(`shutting down: draining in-flight requests (grace ${config.shutdownGraceMs} ms)`);
      closeEvents();
      const drainBoundMs = config.shutdownGraceMs + drainAnswerMs;
      const drained = await settlesWithin(service.drain(config.shutdownGraceMs), drainBoundMs, (e) => log(`shutting down: the drain failed: ${errorText(e)}`));
      if (!drained) log(`shutting down: in-flight work did not end within ${drainBoundMs} ms (an engine, a prune or the model store does not answer); going on without it`);
      // Releasing fails what an engine still holds, so those streams get an error event while the sockets close.
      const released = settlesWithin(service.release(), releaseMs, (e) => log(`shutting down: releasing the engines failed: ${errorText(e)}`));
      await Promise.all([...servers.map((s) => closeServer(s, releaseMs)), released]);
      if (!(await released)) log(`shutting down: an engine did not answer release within ${releaseMs} ms; leaving its thread to the process exit`);
      log('shut down');
    })());

  // Ready only once the engine has actually produced a token.
  await stopIfAborted('the probe generation', close);
  try {
    await probe(dense, signal);
    state.ready = true;
    log('ready: probe generation succeeded');
  } catch (e) {
    if (!signal?.aborted) log(`not ready: probe generation failed: ${errorText(e)}`);
  }
  await stopIfAborted('restoring the model store', close);

  // Model store: the dense model serves (and /ready is 200) while the recorded variants load.
  let recordedActive: string | null = null;
  if (store) {
    try {
      ({ recordedActive } = await service.attachStore(store));
    } catch (e) {
      log(`model store: restoring from ${store.root} failed: ${e instanceof Error ? e.message : String(e)}; serving '${dense.id}'`);
    }
  }
  await stopIfAborted('the start-up prune', close);
  // Start-up prune: the dense model serves meanwhile; the pruned one takes over when it is ready.
  // With a store, a result already there is loaded instead of pruned, and a choice the manifest
  // records (an operator's activation) wins over the declarative target's activation.
  // A prune that cannot start (bad calibration file, say) fails the start-up, and the socket closes.
  if (config.pruneTarget !== undefined) {
    try {
      const job = await service.jobs.start({ ...config.prune, target: config.pruneTarget, activate: recordedActive === null });
      log(`start-up prune: job ${job.id} (${config.prune.strategy} to ${config.pruneTarget}); serving '${dense.id}' until it finishes`);
    } catch (e) {
      await close();
      throw e;
    }
  }
  await stopIfAborted('serving', close);

  return { url, port, adminUrl, service, metrics, state, close };
}

/** Where a client reaches a listener: a wildcard host is reported as loopback. */
function baseUrl(host: string, port: number): string {
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${shown}:${port}`;
}

/** The address a listener is bound to, as logged. */
function listenAddress(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

function listen(fetch: (req: Request) => Response | Promise<Response>, port: number, hostname: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, port, hostname }) as Server;
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve(server);
    });
  });
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
 * Stop listening and wait for open connections to finish their responses. Idle keep-alive
 * connections are closed at once; any still open after `cutAfterMs` (a client that never reads) are cut.
 */
async function closeServer(server: Server, cutAfterMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), cutAfterMs);
    force.unref();
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    idle.unref();
    server.close(() => {
      clearTimeout(force);
      clearInterval(idle);
      resolve();
    });
    server.closeIdleConnections();
  });
}
