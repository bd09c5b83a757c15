/** /admin/store: the model store's entries with their size, key, recipe, and who serves them. */
import type { Hono } from 'hono';
import type { AdminDeps } from './admin-context.ts';
import { ApiError } from './errors.ts';

export function storeRoutes(app: Hono, deps: AdminDeps): void {
  const { service } = deps;
  app.get('/store', async (c) => {
    const sync = service.storeSync;
    if (!sync) throw new ApiError(404, 'This server has no model store (set --model-store / MOP_MODEL_STORE).', 'invalid_request_error', null, 'no_model_store');
    const served = new Map<string, string[]>();
    for (const v of service.list()) {
      const key = sync.keyOf(v.id);
      if (key !== undefined) served.set(key, [...(served.get(key) ?? []), v.id]);
    }
    const entries = await sync.list();
    return c.json({
      object: 'list',
      root: sync.root,
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
}
