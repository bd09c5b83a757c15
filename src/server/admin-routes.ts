/**
 * The operator's API under /admin, behind `Authorization: Bearer <MOP_ADMIN_TOKEN>`: prune jobs,
 * model variants, the A/B split and the model store, each group in its own file; the guards and
 * the error mapping they share in admin-middleware.ts.
 */
import { Hono } from 'hono';
import type { AdminDeps } from './admin-context.ts';
import { exportRoutes } from './admin-export-routes.ts';
import { adminErrorResponse, useAdminGuards } from './admin-middleware.ts';
import { modelRoutes } from './admin-model-routes.ts';
import { pruneJobRoutes } from './admin-prune-routes.ts';
import { splitRoutes } from './admin-split-routes.ts';
import { storeRoutes } from './admin-store-routes.ts';
import { notFound } from './errors.ts';

export function adminRoutes(deps: AdminDeps): Hono {
  const app = new Hono();
  useAdminGuards(app, deps);
  pruneJobRoutes(app, deps);
  modelRoutes(app, deps);
  exportRoutes(app, deps);
  splitRoutes(app, deps);
  storeRoutes(app, deps);
  app.notFound((c) => notFound(`${c.req.method} ${c.req.path}`).toResponse());
  app.onError((e) => adminErrorResponse(e, deps.log));
  return app;
}
