/**
 * What every /admin route shares: the bearer token (404 when none is configured, so a server never
 * exposes the surface by accident), 503 `draining` for changes during shutdown, JSON bodies only,
 * the body limit, and the one mapping of thrown errors to OpenAI-shaped answers.
 */
import type { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { MopInputError } from '../mop/errors.ts';
import { VariantLimitError } from '../service/model-service.ts';
import { EntryReferencedError, ManifestCorruptError, ManifestVersionError } from '../service/model-store/index.ts';
import { PruneConflictError, PruneWorkerError } from '../service/prune/prune-jobs.ts';
import type { AdminDeps } from './admin-context.ts';
import { bearerCheck } from './bearer-auth.ts';
import { requireJsonBody } from './content-type.ts';
import { adminDisabled, ApiError, bodyTooLarge, conflict, invalidRequest, unauthorized, unavailable } from './errors.ts';

/** Admin bodies are small JSON objects (a prune recipe, a split). */
export const ADMIN_MAX_BODY_BYTES = 64 * 1024;

const MUTATING_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Token, draining, content type and body limit, in that order, before any admin route. */
export function useAdminGuards(app: Hono, deps: Pick<AdminDeps, 'token' | 'draining'>): void {
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
}

/** A thrown error as the admin's answer; what is not the client's doing is logged. */
export function adminErrorResponse(e: unknown, log: (line: string) => void): Response {
  if (e instanceof ApiError) return e.toResponse();
  if (e instanceof MopInputError) return invalidRequest(e.message).toResponse();
  if (e instanceof PruneConflictError) return conflict(e.message, e.code).toResponse();
  if (e instanceof VariantLimitError) return conflict(e.message, e.code).toResponse();
  // A purge the store refuses: another replica serves the entry again, or a newer release owns the store.
  if (e instanceof EntryReferencedError || e instanceof ManifestVersionError || e instanceof ManifestCorruptError) return conflict(e.message, 'model_store_refused').toResponse();
  if (e instanceof PruneWorkerError) {
    log(`admin error: ${e.message}`);
    return new ApiError(500, `${e.message}; serving is unaffected.`, 'server_error', null, 'prune_worker_failed').toResponse();
  }
  log(`admin error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  return new ApiError(500, 'Internal server error.', 'server_error').toResponse();
}
