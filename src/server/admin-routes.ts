/**
 * The operator's API under /admin, behind `Authorization: Bearer <MOP_ADMIN_TOKEN>`: start, watch
 * and cancel prune jobs; list, activate and unload model variants. Without a configured token the
 * whole surface answers 404 (off), so a server never exposes it by accident.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { z } from 'zod';
import { MopInputError } from '../mop/errors.ts';
import { type ModelService, VariantLimitError } from '../service/model-service.ts';
import { EntryReferencedError, ManifestCorruptError, ManifestVersionError } from '../service/model-store/index.ts';
import { PruneConflictError, PruneWorkerError } from '../service/prune/prune-jobs.ts';
import { resolveUnderDataDir } from '../service/prune/data-dir.ts';
import { PruneFileError } from '../service/prune/prune-input-files.ts';
import { DEFAULT_MODEL_ALIAS, isDefaultModel } from '../service/variant-registry.ts';
import { jsonLabel, type PruneRecipe, pruneOptions, resolvePruneRecipe } from '../service/prune/prune-options.ts';
import type { ServedVariant } from '../service/engine/served-variant.ts';
import { bearerCheck } from './bearer-auth.ts';
import { requireJsonBody } from './content-type.ts';
import { adminDisabled, ApiError, bodyTooLarge, conflict, fromZodError, invalidRequest, modelNotFound, notFound, unauthorized, unavailable } from './errors.ts';

export interface AdminDeps {
  token: string | undefined;
  service: ModelService;
  /** Grace period for requests still running on a variant being unloaded. */
  unloadGraceMs: number;
  /** What a prune request that omits them uses (the server's --prune-* settings). */
  pruneDefaults: Omit<PruneRecipe, 'target'>;
  log: (line: string) => void;
  /** True once shutdown began: admin changes are refused (503 `draining`), reads still answer. */
  draining: () => boolean;
  /** Files a prune request names must lie under this directory (--data-dir); undefined = the bundled data/. */
  dataDir?: string | undefined;
}

/** Admin bodies are small JSON objects (a prune recipe, a split). */
export const ADMIN_MAX_BODY_BYTES = 64 * 1024;

const MUTATING_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * POST /admin/prune body: every option of the shared prune table under its snake_case name (the
 * same names as `mop prune`'s flags), plus where the result goes. Values are checked by the table.
 */
const pruneTargetFields = z
  .object({
    source: z.string().min(1).optional(),
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" and "-", at most 64')
      // A variant called "default" could never be reached: requests naming it get the active one.
      .refine((id) => !isDefaultModel(id), `"${DEFAULT_MODEL_ALIAS}" is reserved (requests naming it get the active variant); choose another id`)
      .optional(),
    activate: z.boolean().default(true),
  })
  .catchall(z.unknown());

const recipeFields = new Set(pruneOptions.map((o) => o.json));

const splitSchema = z.object({ variant: z.string().min(1), share: z.number().min(0).max(1) }).strict();

export function adminRoutes(deps: AdminDeps): Hono {
  const app = new Hono();
  const tokenMatches = bearerCheck(deps.token === undefined ? [] : [deps.token]);

  app.use('*', async (c, next) => {
    if (deps.token === undefined) return adminDisabled().toResponse();
    if (!tokenMatches(c.req.header('authorization'))) return unauthorized().toResponse();
    await next();
  });
  app.use('*', async (c, next) => {
    if (deps.draining() && MUTATING_METHODS.has(c.req.method)) {
      return unavailable('The server is shutting down: admin changes are refused; send them to the next instance.', 'draining').toResponse();
    }
    await next();
  });
  app.use('*', requireJsonBody());
  app.use('*', bodyLimit({ maxSize: ADMIN_MAX_BODY_BYTES, onError: () => bodyTooLarge(ADMIN_MAX_BODY_BYTES).toResponse() }));

  app.post('/prune', async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      throw invalidRequest('The body must be a JSON object, e.g. {"target": 0.4, "strategy": "mop"}.');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidRequest('The body must be a JSON object, e.g. {"target": 0.4, "strategy": "mop"}.');
    const parsed = pruneTargetFields.safeParse(body);
    if (!parsed.success) throw fromZodError(parsed.error);
    const { source, id, activate, ...rest } = parsed.data;
    for (const field of Object.keys(rest)) {
      if (!recipeFields.has(field)) throw invalidRequest(`Unknown field '${field}'; a prune request takes ${[...recipeFields, 'source', 'id', 'activate'].join(', ')}.`, field);
    }
    const raw: Partial<Record<keyof PruneRecipe, unknown>> = {};
    for (const o of pruneOptions) if (rest[o.json] !== undefined) raw[o.key] = rest[o.json];
    let recipe: PruneRecipe;
    try {
      recipe = resolvePruneRecipe(raw, deps.pruneDefaults, jsonLabel, true);
    } catch (e) {
      if (e instanceof MopInputError) throw invalidRequest(e.message, e.message.split(':')[0]);
      throw e;
    }
    // Files named in the request only from the data directory; the server's own defaults are the operator's.
    for (const o of pruneOptions) {
      if (o.type.kind !== 'text' || rest[o.json] === undefined) continue;
      const real = await resolveUnderDataDir(recipe[o.key] as string, deps.dataDir);
      if (real === undefined) throw invalidRequest(`${o.json} must name a regular file under the server's data directory (--data-dir), as a path relative to it or an absolute one.`, o.json);
      (recipe as unknown as Record<string, unknown>)[o.key] = real;
    }
    // Refused before anything runs: a prune whose result could not be served (409).
    deps.service.checkRoomFor(id);
    let job;
    try {
      job = await deps.service.jobs.start({ ...recipe, activate, ...(source !== undefined && { source }), ...(id !== undefined && { id }) });
    } catch (e) {
      if (e instanceof PruneFileError) throw invalidRequest(e.message, e.field);
      throw e;
    }
    return c.json(job, 202, { location: `/admin/prune/${job.id}` });
  });

  app.get('/prune', (c) => c.json({ object: 'list', data: deps.service.jobs.list() }));

  app.get('/prune/:id', (c) => {
    const job = deps.service.jobs.get(c.req.param('id'));
    if (!job) throw jobNotFound(deps.service, c.req.param('id'));
    return c.json(job);
  });

  app.delete('/prune/:id', async (c) => {
    const job = await deps.service.jobs.cancel(c.req.param('id'));
    if (!job) throw jobNotFound(deps.service, c.req.param('id'));
    return c.json(job);
  });

  app.get('/models', (c) => {
    const active = deps.service.active?.id;
    return c.json({ object: 'list', active: active ?? null, data: deps.service.list().map((v) => variantView(v, v.id === active)) });
  });

  app.post('/models/:id/activate', async (c) => {
    const id = c.req.param('id');
    const v = deps.service.get(id);
    if (!v) throw modelNotFound(id);
    if (v.status !== 'serving') throw conflict(`'${id}' is ${v.status} (${v.statusReason ?? 'its engine is not running'}); it cannot be activated`, 'model_unavailable');
    await deps.service.activate(id);
    return c.json({ ...variantView(v, true), ...storeWarning(deps.service) });
  });

  // For an engine that no longer answers: its thread is stopped (its requests fail with 503) and
  // the restart policy (--engine-restarts) starts it again.
  app.post('/models/:id/restart', async (c) => {
    const id = c.req.param('id');
    if (!deps.service.has(id)) throw modelNotFound(id);
    deps.log(`restarting the engine of '${id}' (admin request)`);
    await deps.service.restart(id);
    return c.json(variantView(deps.service.get(id)!, deps.service.active?.id === id), 202);
  });

  // A/B test: a share of the requests that name no model go to another variant.
  app.get('/split', (c) => c.json({ split: deps.service.split ?? null }));
  app.put('/split', async (c) => {
    const parsed = splitSchema.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success) throw fromZodError(parsed.error);
    if (!deps.service.has(parsed.data.variant)) throw modelNotFound(parsed.data.variant);
    await deps.service.setSplit(parsed.data);
    deps.log(`traffic split: ${Math.round(parsed.data.share * 100)}% of default requests to '${parsed.data.variant}'`);
    return c.json({ split: deps.service.split, ...storeWarning(deps.service) });
  });
  app.delete('/split', async (c) => {
    await deps.service.setSplit(undefined);
    return c.json({ split: null, ...storeWarning(deps.service) });
  });

  app.delete('/models/:id', async (c) => {
    const id = c.req.param('id');
    if (!deps.service.has(id)) throw modelNotFound(id);
    if (deps.service.active?.id === id) throw conflict(`'${id}' is the active model; activate another variant before unloading it`, 'model_active');
    const purge = parsePurge(c.req.query('purge'));
    if (purge) {
      const store = deps.service.storeSync;
      if (!store) throw invalidRequest('purge=true deletes a variant\'s model-store entry, but this server has no model store (--model-store / MOP_MODEL_STORE).', 'purge');
      if (store.keyOf(id) === undefined) throw invalidRequest(`'${id}' is not served from the model store; there is no entry to purge (unload it without purge).`, 'purge');
    }
    // Requests already running on it finish (up to the grace period) before its memory goes.
    const { purged } = await deps.service.unload(id, deps.unloadGraceMs, { purge });
    return c.json({ id, object: 'model', deleted: true, ...(purge && { purged }), ...storeWarning(deps.service) });
  });

  // The model store: every entry with its size, key, recipe, and who serves it.
  app.get('/store', async (c) => {
    const store = deps.service.storeSync;
    if (!store) throw new ApiError(404, 'This server has no model store (set --model-store / MOP_MODEL_STORE).', 'invalid_request_error', null, 'no_model_store');
    const served = new Map<string, string[]>();
    for (const v of deps.service.list()) {
      const key = store.keyOf(v.id);
      if (key !== undefined) served.set(key, [...(served.get(key) ?? []), v.id]);
    }
    const entries = await store.list();
    return c.json({
      object: 'list',
      root: store.root,
      total_bytes: entries.reduce((n, e) => n + e.bytes, 0),
      data: entries.map((e) => ({
        key: e.key,
        bytes: e.bytes,
        recipe: e.recipe,
        source_digest: e.sourceDigest,
        created_at: e.createdAt,
        last_used_at: e.lastUsedAt,
        referenced_by: e.referencedBy,
        served_here: served.get(e.key) ?? [],
        served: e.referencedBy.length > 0 || served.has(e.key),
        problem: e.problem,
      })),
    });
  });

  app.notFound((c) => notFound(`${c.req.method} ${c.req.path}`).toResponse());
  app.onError((e) => {
    if (e instanceof ApiError) return e.toResponse();
    if (e instanceof MopInputError) return invalidRequest(e.message).toResponse();
    if (e instanceof PruneConflictError) return conflict(e.message, e.code).toResponse();
    if (e instanceof VariantLimitError) return conflict(e.message, e.code).toResponse();
    // A purge the store refuses: another replica serves the entry again, or a newer release owns the store.
    if (e instanceof EntryReferencedError || e instanceof ManifestVersionError || e instanceof ManifestCorruptError) return conflict(e.message, 'model_store_refused').toResponse();
    if (e instanceof PruneWorkerError) {
      deps.log(`admin error: ${e.message}`);
      return new ApiError(500, `${e.message}; serving is unaffected.`, 'server_error', null, 'prune_worker_failed').toResponse();
    }
    deps.log(`admin error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return new ApiError(500, 'Internal server error.', 'server_error').toResponse();
  });
  return app;
}

/**
 * `model_store_warning` when the change applied here but the model-store manifest could not record
 * it (other replicas do not see it yet; it is retried): the admin's answer says so.
 */
function storeWarning(service: ModelService): { model_store_warning?: string } {
  const warning = service.storeSync?.unrecorded();
  return warning === undefined ? {} : { model_store_warning: warning };
}

/** `?purge=true|false`; anything else is a 400 naming the parameter. */
function parsePurge(raw: string | undefined): boolean {
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  throw invalidRequest(`purge must be true or false, got '${raw}'.`, 'purge');
}

/** 404 for a job id: never existed, or no longer kept (then where its result may be). */
function jobNotFound(service: ModelService, id: string): ApiError {
  if (!service.jobs.forgotten(id)) return new ApiError(404, `No prune job '${id}'.`, 'invalid_request_error', null, 'job_not_found');
  const where = service.storeSync ? ' If it succeeded, its pruned model is in the model store: GET /admin/store lists the entries with their recipes.' : '';
  return new ApiError(
    404,
    `Prune job '${id}' aged out: the server keeps the last ${service.jobs.historyLimit} finished jobs (--max-job-history), and none for a request it refused.${where}`,
    'invalid_request_error',
    null,
    'job_aged_out',
  );
}

function variantView(v: ServedVariant, active: boolean) {
  return {
    id: v.id,
    object: 'model',
    active,
    created: v.created,
    parameters: v.parameters,
    compression_ratio: v.compressionRatio,
    layers: v.layers,
    path: v.path,
    max_model_len: v.maxContext,
    device: v.target.device,
    dtype: v.target.weights ?? v.target.dtype,
    status: v.status,
    status_reason: v.statusReason ?? null,
    running: v.scheduler.stats().running,
  };
}
