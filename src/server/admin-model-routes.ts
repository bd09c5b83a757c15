/**
 * /admin/models: the served variants, activating one, restarting one's engine, and unloading one
 * (with `?purge=true`, its model-store entry too).
 */
import type { Hono } from 'hono';
import type { ServedVariant } from '../service/variants/served-variant.ts';
import { type AdminDeps, storeWarning } from './admin-context.ts';
import { conflict, invalidRequest, modelNotFound } from './errors.ts';

export function modelRoutes(app: Hono, deps: AdminDeps): void {
  const { service } = deps;
  app.get('/models', (c) => {
    const active = service.active?.id;
    return c.json({ object: 'list', active: active ?? null, data: service.list().map((v) => variantView(v, v.id === active)) });
  });

  app.post('/models/:id/activate', async (c) => {
    const id = c.req.param('id');
    const v = service.get(id);
    if (!v) throw modelNotFound(id);
    if (v.status !== 'serving') throw conflict(`'${id}' is ${v.status} (${v.statusReason ?? 'its engine is not running'}); it cannot be activated`, 'model_unavailable');
    await service.activate(id);
    return c.json({ ...variantView(v, true), ...storeWarning(service) });
  });

  // For an engine that no longer answers: its thread is stopped (its requests fail with 503) and
  // the restart policy (--engine-restarts) starts it again.
  app.post('/models/:id/restart', async (c) => {
    const id = c.req.param('id');
    if (!service.has(id)) throw modelNotFound(id);
    deps.log(`restarting the engine of '${id}' (admin request)`);
    await service.restart(id);
    return c.json(variantView(service.get(id)!, service.active?.id === id), 202);
  });

  app.delete('/models/:id', async (c) => {
    const id = c.req.param('id');
    if (!service.has(id)) throw modelNotFound(id);
    if (service.active?.id === id) throw conflict(`'${id}' is the active model; activate another variant before unloading it`, 'model_active');
    const purge = parsePurge(c.req.query('purge'));
    if (purge) {
      const sync = service.storeSync;
      if (!sync) throw invalidRequest('purge=true deletes a variant\'s model-store entry, but this server has no model store (--model-store / MOP_MODEL_STORE).', 'purge');
      if (sync.keyOf(id) === undefined) throw invalidRequest(`'${id}' is not served from the model store; there is no entry to purge (unload it without purge).`, 'purge');
    }
    // Requests already running on it finish (up to the grace period) before its memory goes.
    const { purged } = await service.unload(id, deps.unloadGraceMs, { purge });
    return c.json({ id, object: 'model', deleted: true, ...(purge && { purged }), ...storeWarning(service) });
  });
}

/** `?purge=true|false`; anything else is a 400 naming the parameter. */
function parsePurge(raw: string | undefined): boolean {
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  throw invalidRequest(`purge must be true or false, got '${raw}'.`, 'purge');
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
