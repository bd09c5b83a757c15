/**
 * The operator's API under /admin, behind `Authorization: Bearer <MOP_ADMIN_TOKEN>`: start, watch
 * and cancel prune jobs; list, activate and unload model variants. Without a configured token the
 * whole surface answers 404 (off), so a server never exposes it by accident.
 */
import { Hono } from 'hono';
import { z } from 'zod';
import { MopInputError } from '../mop/errors.ts';
import { bearerMatches } from './admin-auth.ts';
import type { AdminEvents } from './admin-events.ts';
import { adminDisabled, ApiError, conflict, fromZodError, invalidRequest, modelNotFound, notFound, unauthorized } from './errors.ts';
import { PruneConflictError, type PruneJobs } from './prune-jobs.ts';
import type { ModelRegistry, ServedVariant } from './registry.ts';

export interface AdminDeps {
  token: string | undefined;
  registry: ModelRegistry;
  jobs: PruneJobs;
  events: AdminEvents;
  /** Grace period for requests still running on a variant being unloaded. */
  unloadGraceMs: number;
  /** What a prune request that omits them uses (the server's --prune-* settings). */
  pruneDefaults: { strategy: string; criterion: string; samples: number; seqLen: number; calibration: string | undefined };
  log: (line: string) => void;
}

/** POST /admin/prune body. Names follow the CLI flags (`mop prune`). */
export const pruneRequestSchema = z
  .object({
    target: z.number(),
    strategy: z.string().optional(),
    criterion: z.string().optional(),
    samples: z.number().int().min(1).max(4096).optional(),
    seq_len: z.number().int().min(2).max(8192).optional(),
    seed: z.number().int().min(0).default(0),
    calibration: z.string().min(1).optional(),
    source: z.string().min(1).optional(),
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" and "-", at most 64')
      .optional(),
    activate: z.boolean().default(true),
  })
  .strict();

const splitSchema = z.object({ variant: z.string().min(1), share: z.number().min(0).max(1) }).strict();

export function adminRoutes(deps: AdminDeps): Hono {
  const app = new Hono();

  app.use('*', async (c, next) => {
    if (deps.token === undefined) return adminDisabled().toResponse();
    if (!bearerMatches(c.req.header('authorization'), deps.token)) return unauthorized().toResponse();
    await next();
  });

  app.post('/prune', async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      throw invalidRequest('The body must be a JSON object, e.g. {"target": 0.4, "strategy": "mop"}.');
    }
    const parsed = pruneRequestSchema.safeParse(body);
    if (!parsed.success) throw fromZodError(parsed.error);
    const b = parsed.data;
    const d = deps.pruneDefaults;
    const calibration = b.calibration ?? d.calibration;
    const job = await deps.jobs.start({
      target: b.target,
      strategy: (b.strategy ?? d.strategy) as never,
      criterion: (b.criterion ?? d.criterion) as never,
      samples: b.samples ?? d.samples,
      seqLen: b.seq_len ?? d.seqLen,
      seed: b.seed,
      activate: b.activate,
      ...(calibration !== undefined && { calibration }),
      ...(b.source !== undefined && { source: b.source }),
      ...(b.id !== undefined && { id: b.id }),
    });
    return c.json(job, 202, { location: `/admin/prune/${job.id}` });
  });

  app.get('/prune', (c) => c.json({ object: 'list', data: deps.jobs.list() }));

  app.get('/prune/:id', (c) => {
    const job = deps.jobs.get(c.req.param('id'));
    if (!job) throw jobNotFound(c.req.param('id'));
    return c.json(job);
  });

  app.delete('/prune/:id', async (c) => {
    const job = await deps.jobs.cancel(c.req.param('id'));
    if (!job) throw jobNotFound(c.req.param('id'));
    return c.json(job);
  });

  app.get('/models', (c) => {
    const active = deps.registry.active?.id;
    return c.json({ object: 'list', active: active ?? null, data: deps.registry.list().map((v) => variantView(v, v.id === active)) });
  });

  app.post('/models/:id/activate', (c) => {
    const id = c.req.param('id');
    if (!deps.registry.has(id)) throw modelNotFound(id);
    deps.jobs.activate(id);
    return c.json(variantView(deps.registry.get(id)!, true));
  });

  // A/B test: a share of the requests that name no model go to another variant.
  app.get('/split', (c) => c.json({ split: deps.registry.split ?? null }));
  app.put('/split', async (c) => {
    const parsed = splitSchema.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success) throw fromZodError(parsed.error);
    if (!deps.registry.has(parsed.data.variant)) throw modelNotFound(parsed.data.variant);
    deps.registry.setSplit(parsed.data);
    deps.log(`traffic split: ${Math.round(parsed.data.share * 100)}% of default requests to '${parsed.data.variant}'`);
    deps.events.publish({ type: 'split_changed', split: parsed.data });
    return c.json({ split: deps.registry.split });
  });
  app.delete('/split', (c) => {
    deps.registry.setSplit(undefined);
    deps.events.publish({ type: 'split_changed', split: null });
    return c.json({ split: null });
  });

  app.delete('/models/:id', async (c) => {
    const id = c.req.param('id');
    const v = deps.registry.get(id);
    if (!v) throw modelNotFound(id);
    if (deps.registry.active?.id === id) throw conflict(`'${id}' is the active model; activate another variant before unloading it`, 'model_active');
    deps.registry.remove(id);
    deps.events.publish({ type: 'model_removed', id });
    // Requests already running on it finish (up to the grace period) before its memory goes.
    await v.scheduler.drain(deps.unloadGraceMs);
    await v.session.release();
    deps.log(`unloaded model variant '${id}'`);
    return c.json({ id, object: 'model', deleted: true });
  });

  app.notFound((c) => notFound(`${c.req.method} ${c.req.path}`).toResponse());
  app.onError((e) => {
    if (e instanceof ApiError) return e.toResponse();
    if (e instanceof MopInputError) return invalidRequest(e.message).toResponse();
    if (e instanceof PruneConflictError) return conflict(e.message, e.code).toResponse();
    deps.log(`admin error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return new ApiError(500, 'Internal server error.', 'server_error').toResponse();
  });
  return app;
}

function jobNotFound(id: string): ApiError {
  return new ApiError(404, `No prune job '${id}'.`, 'invalid_request_error', null, 'job_not_found');
}

function variantView(v: ServedVariant, active: boolean) {
  return {
    id: v.id,
    object: 'model',
    active,
    created: v.created,
    parameters: v.parameters,
    compression_ratio: v.compressionRatio,
    layers: v.model.spec.layers,
    path: v.model.path,
    running: v.scheduler.stats().running,
  };
}
