/**
 * The HTTP surface as a hono app, independent of how it is served (node-server in production,
 * `app.request()` in a test): routes, CORS, API keys, content type and body limits, JSON decoding,
 * and the one place where thrown errors become OpenAI-shaped responses.
 */
import { Hono } from 'hono';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { requireApiKey } from './api-key.ts';
import { handleChatCompletion } from './chat.ts';
import { handleCompletion } from './completions.ts';
import { requireJsonBody } from './content-type.ts';
import { corsFor } from './cors.ts';
import { type HostPolicy, refusalLog, requireAllowedHost } from './host-check.ts';
import type { EndpointContext, EndpointLimits } from './endpoint.ts';
import { outcomeOf, toApiError } from './service-errors.ts';
import { handleDetokenize, handleTokenize, TOKENIZE_PATHS } from './tokenize-routes.ts';
import type { TokenizeThread } from './tokenize-thread.ts';
import { bodyTooLarge, invalidRequest, modelNotFound, notFound, unavailable } from './errors.ts';
import type { RequestOutcome, ServerMetrics, TokenizeRoute } from './metrics.ts';
import type { ModelCard, ModelList } from './protocol.ts';
import type { ModelService } from '../service/model-service.ts';
import type { ServedVariant } from '../service/variants/served-variant.ts';
import type { ChatTemplate } from './chat-template.ts';

/** Lifecycle flags the app reports on /ready and honours on generation routes. */
export interface ServerState {
  /** A model is loaded and the start-up probe generation succeeded. */
  ready: boolean;
  /** Shutdown began: no new generations, /ready answers 503. */
  draining: boolean;
}

export interface AppDeps {
  service: ModelService;
  chatTemplate: ChatTemplate;
  metrics: ServerMetrics;
  limits: EndpointLimits;
  maxBodyBytes: number;
  state: ServerState;
  /** Where unexpected errors are logged (default: stderr). */
  log?: (line: string) => void;
  /** The /admin routes (prune jobs, variants), mounted when given. */
  admin?: Hono;
  /** Where POST /tokenize and /detokenize tokenize, and generation routes encode prompts that are not small; absent: inline on the HTTP thread. */
  tokenizeThread?: TokenizeThread | undefined;
  /** Bearer keys of which every /v1 request must carry one (--api-key); unset or empty: /v1 is open. */
  apiKeys?: readonly string[] | undefined;
  /** Origins (or '*') browsers may call /v1 from (--allowed-origins); unset: no CORS headers at all. */
  allowedOrigins?: readonly string[] | undefined;
  /** Which Host headers are answered (host-check.ts); unset: any. */
  hostPolicy?: HostPolicy | undefined;
}

type Env = { Variables: { clientSignal: AbortSignal } };

type Handler = (json: unknown, ctx: EndpointContext) => Promise<Response>;

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function createApp(deps: AppDeps): Hono<Env> {
  const log = deps.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const app = new Hono<Env>();

  // Captured before bodyLimit may swap the Request object: aborts when the client disconnects.
  app.use('*', async (c, next) => {
    c.set('clientSignal', c.req.raw.signal);
    await next();
  });

  guardRequests(app, deps, log);

  const generation = (handler: Handler) => async (c: Context<Env>) => {
    let json: unknown;
    const ctx: EndpointContext = { service: deps.service, chatTemplate: deps.chatTemplate, tokenizeThread: deps.tokenizeThread, metrics: deps.metrics, limits: deps.limits, signal: c.get('clientSignal'), log };
    try {
      if (deps.state.draining) throw unavailable('The server is shutting down and takes no new requests.');
      json = await readJson(c);
      return await handler(json, ctx);
    } catch (e) {
      // Counted under the variant the handler resolved (never drawn again: an A/B split is random);
      // a request that failed before resolving counts under the variant it names, or the active one.
      const model = (json as { model?: unknown } | undefined)?.model;
      const variant = ctx.variant ?? deps.service.lookup(model);
      const err = toApiError(e, log);
      // Once a fan-out took the request, it counted the outcome itself.
      if (!ctx.counted) countFailure(deps, variant, outcomeOf(err));
      return err.toResponse();
    }
  };

  app.post('/v1/completions', generation(handleCompletion));
  app.post('/v1/chat/completions', generation(handleChatCompletion));
  mountTokenizeRoutes(app, deps, log);

  app.get('/v1/models', (c) => {
    const list: ModelList = { object: 'list', data: deps.service.list().map(modelCard) };
    return c.json(list);
  });
  app.get('/v1/models/:id{.+}', (c) => {
    const variant = deps.service.lookup(c.req.param('id'));
    if (!variant) return modelNotFound(c.req.param('id')).toResponse();
    return c.json(modelCard(variant));
  });

  if (deps.admin) app.route('/admin', deps.admin);

  // Liveness: the process answers, and the active model's engine is not stuck. A stalled active
  // engine fails it so that Kubernetes restarts the pod (its thread cannot be stopped otherwise).
  app.get('/health', (c) => {
    const active = deps.service.active;
    const stalledMs = active?.stalledMs() ?? 0;
    if (active && stalledMs > 0) return unavailable(`not live: the engine of the active model '${active.id}' has been stalled for ${Math.round(stalledMs / 1000)} s (${active.statusReason ?? 'no step finished'})`, 'engine_stalled').toResponse();
    return c.json({ status: 'ok' });
  });
  app.get('/ready', (c) => {
    const active = deps.service.active;
    if (deps.state.draining) return unavailable('draining: the server is shutting down').toResponse();
    if (!deps.state.ready || !active) return unavailable('not ready: no model has answered a probe generation yet').toResponse();
    if (active.status !== 'serving') return unavailable(`not ready: the active model '${active.id}' is ${active.status}: ${active.statusReason ?? 'its engine is not running'}`, 'model_unavailable').toResponse();
    const down = deps.service.list().filter((v) => v.status !== 'serving');
    return c.json({ status: 'ready', model: active.id, ...(down.length > 0 && { unavailable: down.map((v) => ({ id: v.id, status: v.status, reason: v.statusReason ?? null })) }) });
  });

  app.get('/metrics', async (c) => {
    const { contentType, body } = await deps.metrics.render();
    return c.body(body, 200, { 'content-type': contentType });
  });

  app.notFound((c) => notFound(`${c.req.method} ${c.req.path}`).toResponse());
  app.onError((e) => toApiError(e, log).toResponse());
  return app;
}

/**
 * What every request passes before its handler: a name the server does not answer to (DNS
 * rebinding) is refused first, on every path. Then, on /v1 and the tokenize routes: CORS (a
 * preflight carries no API key), the key, the content type (415 before a byte of the body is
 * read), the body limit. Each refusal is counted (countRefused).
 */
function guardRequests(app: Hono<Env>, deps: AppDeps, log: (line: string) => void): void {
  if (deps.hostPolicy?.check) {
    const logRefusal = refusalLog(log);
    app.use('*', requireAllowedHost(deps.hostPolicy, (path, host) => {
      logRefusal(path, host);
      countRefused(deps, path, 'forbidden');
    }));
  }
  for (const path of ['/v1/*', ...TOKENIZE_PATHS]) {
    const count = (outcome: RequestOutcome) => countRefused(deps, path === '/v1/*' ? '/v1/' : path, outcome);
    if (deps.allowedOrigins && deps.allowedOrigins.length > 0) app.use(path, corsFor(deps.allowedOrigins));
    if (deps.apiKeys && deps.apiKeys.length > 0) app.use(path, requireApiKey(deps.apiKeys, () => count('unauthorized')));
    app.use(path, requireJsonBody(() => count('invalid')));
    app.use(
      path,
      bodyLimit({
        maxSize: deps.maxBodyBytes,
        onError: () => {
          count('too_large');
          return bodyTooLarge(deps.maxBodyBytes).toResponse();
        },
      }),
    );
  }
}

/** A request refused before its handler: /v1 in mop_requests_total, the tokenize routes in mop_tokenize_requests_total (model unknown: no body read); other paths are not counted. */
function countRefused(deps: AppDeps, path: string, outcome: RequestOutcome): void {
  if (path.startsWith('/v1/')) countFailure(deps, undefined, outcome);
  else if ((TOKENIZE_PATHS as readonly string[]).includes(path)) deps.metrics.countTokenize('unknown', tokenizeRoute(path), outcome);
}

/** POST /tokenize and /detokenize: not generations, so not refused while draining; counted in mop_tokenize_requests_total. */
function mountTokenizeRoutes(app: Hono<Env>, deps: AppDeps, log: (line: string) => void): void {
  const tokenizing = (route: TokenizeRoute, handler: (json: unknown, d: AppDeps, signal: AbortSignal) => Promise<object>) => async (c: Context<Env>) => {
    let json: unknown;
    // The variant the request names (the active one without a name), as generations are counted.
    const model = () => deps.service.lookup((json as { model?: unknown } | undefined)?.model)?.id ?? 'unknown';
    try {
      json = await readJson(c);
      const answer = await handler(json, deps, c.get('clientSignal'));
      deps.metrics.countTokenize(model(), route, 'success');
      return c.json(answer);
    } catch (e) {
      const err = toApiError(e, log);
      deps.metrics.countTokenize(model(), route, outcomeOf(err));
      return err.toResponse();
    }
  };
  app.post('/tokenize', tokenizing('tokenize', handleTokenize));
  app.post('/detokenize', tokenizing('detokenize', handleDetokenize));
}

/** The body as JSON: it must be UTF-8 (decoded strictly, no silent U+FFFD) and parse. */
async function readJson(c: Context<Env>): Promise<unknown> {
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw invalidRequest('The request body is not valid UTF-8.');
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalidRequest(`We could not parse the JSON body of your request: ${(e as Error).message}`);
  }
}

/** Failed requests are counted under the variant they named, or "unknown" (bounded label values). */
function tokenizeRoute(path: string): TokenizeRoute {
  return path === '/detokenize' ? 'detokenize' : 'tokenize';
}

function countFailure(deps: AppDeps, variant: ServedVariant | undefined, outcome: RequestOutcome): void {
  deps.metrics.countRequest(variant?.id ?? 'unknown', outcome);
}

function modelCard(v: ServedVariant): ModelCard {
  return {
    id: v.id,
    object: 'model',
    created: v.created,
    owned_by: 'mop-serve',
    parameters: v.parameters,
    compression_ratio: v.compressionRatio,
    max_model_len: v.maxContext,
  };
}
