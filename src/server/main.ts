/**
 * Wiring: configuration → model → scheduler → registry → app → listening socket, and back down
 * again on shutdown (stop taking requests, let in-flight ones finish within the grace period,
 * close the socket, release the session). `mop serve` and the tests both start the server here.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { describeModel, type OpenedModel, openModel } from '../runtime/engine/open-model.ts';
import { defaultSamplingParams } from '../runtime/engine/sampling-params.ts';
import { AdminEvents, attachAdminEventSocket } from './admin-events.ts';
import { adminRoutes } from './admin-routes.ts';
import { createApp, type ServerState } from './app.ts';
import { loadChatTemplate } from './chat-template.ts';
import { formatConfig, modelNameFromPath, type ServerConfig } from './config.ts';
import { ServerMetrics } from './metrics.ts';
import { PruneJobs } from './prune-jobs.ts';
import { ModelRegistry, type ServedVariant } from './registry.ts';
import { createVariant } from './variant.ts';

export interface StartOptions {
  /** A model opened by the caller (benchmarks with synthetic weights); default: openModel(config). */
  opened?: OpenedModel;
  /** Start-up and error log lines (default: stderr). */
  log?: (line: string) => void;
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8000 (a wildcard host is reported as loopback). */
  url: string;
  port: number;
  registry: ModelRegistry;
  metrics: ServerMetrics;
  state: ServerState;
  /** Prune jobs (admin API and start-up prune). */
  jobs: PruneJobs;
  /** Graceful shutdown: 503 for new work, in-flight requests finish (up to the grace period), socket closed. */
  close(): Promise<void>;
}

export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  log('mop serve: configuration (flag / environment variable):');
  for (const line of formatConfig(config)) log(line);

  const opened =
    options.opened ??
    (await openModel({
      ...(config.model !== undefined && { modelPath: config.model }),
      ...(config.tokenizer !== undefined && { tokenizerPath: config.tokenizer }),
      ...(config.context !== undefined && { maxContext: config.context }),
      ...(config.threads !== undefined && { threads: config.threads }),
      device: config.device,
      dtype: config.dtype,
      maxBatch: config.maxBatch,
    }));
  if (opened.deviceWarning) log(`warning: ${opened.deviceWarning}`);
  log(`loaded ${describeModel(opened)} (${opened.deviceNote})`);

  const chatTemplate = loadChatTemplate(config.chatTemplate, opened.model.chatTemplate);
  if (chatTemplate.source === 'default') {
    log("chat template: the checkpoint has none; /v1/chat/completions uses a plain 'role: content' transcript (set --chat-template / MOP_CHAT_TEMPLATE)");
  } else log(`chat template: from the ${chatTemplate.source === 'configured' ? '--chat-template option' : 'checkpoint'}`);

  const variant = createVariant(
    {
      id: config.servedModelName ?? modelNameFromPath(opened.model.path),
      model: opened.model,
      tokenizer: opened.tokenizer,
      session: opened.session,
      chatTemplate,
      compressionRatio: 0,
    },
    config,
  );
  const registry = new ModelRegistry();
  registry.add(variant);
  const metrics = new ServerMetrics(() => registry.list());
  const state: ServerState = { ready: false, draining: false };
  const events = new AdminEvents();
  const jobs = new PruneJobs({ registry, events, metrics, scheduling: config, threads: config.threads, log, denseId: variant.id });
  const app = createApp({
    admin: adminRoutes({
      token: config.adminToken,
      registry,
      jobs,
      events,
      unloadGraceMs: config.shutdownGraceMs,
      log,
      pruneDefaults: { strategy: config.pruneStrategy, criterion: config.pruneCriterion, samples: config.pruneSamples, seqLen: config.pruneSeqLen, calibration: config.pruneCalibration },
    }),
    registry,
    metrics,
    state,
    log,
    maxBodyBytes: config.maxBodyBytes,
    // Every generation of a request is submitted at once and waits in the queue until admitted.
    limits: { maxTokensDefault: config.maxTokensDefault, maxN: config.maxN, maxChoices: config.maxQueue },
  });

  const server = await listen(app.fetch, config.port, config.host);
  const closeEvents = attachAdminEventSocket(server, events, config.adminToken);
  log(config.adminToken === undefined ? 'admin API: off (set --admin-token / MOP_ADMIN_TOKEN to enable /admin and /admin/events)' : 'admin API: on (/admin/*, WebSocket /admin/events; bearer token required)');
  const port = (server.address() as AddressInfo).port;
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${shownHost}:${port}`;
  log(`listening on http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port} (model id '${variant.id}')`);

  // Ready only once the engine has actually produced a token.
  try {
    await probe(variant);
    state.ready = true;
    log('ready: probe generation succeeded');
  } catch (e) {
    log(`not ready: probe generation failed: ${e instanceof Error ? e.message : String(e)}`);
  }

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      state.draining = true;
      log(`shutting down: draining in-flight requests (grace ${config.shutdownGraceMs} ms)`);
      closeEvents();
      await jobs.close();
      await Promise.all(registry.list().map((v) => v.scheduler.drain(config.shutdownGraceMs)));
      await closeServer(server);
      await Promise.all(registry.list().map((v) => v.session.release()));
      log('shut down');
    })());
  // Start-up prune: the dense model serves meanwhile; the pruned one takes over when it is ready.
  // A prune that cannot start (bad calibration file, say) fails the start-up, and the socket closes.
  if (config.pruneTarget !== undefined) {
    try {
      const job = await jobs.start({
        target: config.pruneTarget,
        strategy: config.pruneStrategy as never,
        criterion: config.pruneCriterion as never,
        samples: config.pruneSamples,
        seqLen: config.pruneSeqLen,
        seed: 0,
        activate: true,
        ...(config.pruneCalibration !== undefined && { calibration: config.pruneCalibration }),
      });
      log(`start-up prune: job ${job.id} (${config.pruneStrategy} to ${config.pruneTarget}); serving '${variant.id}' until it finishes`);
    } catch (e) {
      await close();
      throw e;
    }
  }

  return { url, port, registry, metrics, state, jobs, close };
}

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

/** One greedy token from BOS: proves session, scheduler and sampler work end to end. */
async function probe(v: ServedVariant): Promise<void> {
  const bos = v.tokenizer.bosTokenId ?? v.tokenizer.encode('a', { addBos: false })[0] ?? 0;
  const handle = v.scheduler.submit({ promptTokens: [bos], maxTokens: 1, sampling: defaultSamplingParams({ temperature: 0 }), ignoreEos: true });
  for await (const e of handle.events) {
    if (e.type === 'finish' && e.completionTokens !== 1) throw new Error(`probe finished with reason ${e.reason} after ${e.completionTokens} tokens`);
  }
}

/**
 * Stop listening and wait for open connections to finish their responses. Idle keep-alive
 * connections are closed at once; any still open after 5 s (a client that never reads) are cut.
 */
async function closeServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), 5000);
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
