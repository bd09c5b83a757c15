/** /admin/split: the A/B test, a share of the requests that name no model going to another variant. */
import type { Hono } from 'hono';
import { z } from 'zod';
import { type AdminDeps, storeWarning } from './admin-context.ts';
import { fromZodError, modelNotFound } from './errors.ts';

const splitSchema = z.object({ variant: z.string().min(1), share: z.number().min(0).max(1) }).strict();

export function splitRoutes(app: Hono, deps: AdminDeps): void {
  const { service } = deps;
  app.get('/split', (c) => c.json({ split: service.split ?? null }));

  app.put('/split', async (c) => {
    const parsed = splitSchema.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success) throw fromZodError(parsed.error);
    if (!service.has(parsed.data.variant)) throw modelNotFound(parsed.data.variant);
    await service.setSplit(parsed.data);
    deps.log(`traffic split: ${Math.round(parsed.data.share * 100)}% of default requests to '${parsed.data.variant}'`);
    return c.json({ split: service.split, ...storeWarning(service) });
  });

  app.delete('/split', async (c) => {
    await service.setSplit(undefined);
    return c.json({ split: null, ...storeWarning(service) });
  });
}
