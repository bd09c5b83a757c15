/**
 * `--api-key` (as vLLM's): every request under /v1 must carry `Authorization: Bearer <key>` with
 * one of the configured keys, else 401 in OpenAI's shape (the official clients raise
 * AuthenticationError). Health, readiness and metrics live outside /v1 and stay open.
 */
import type { MiddlewareHandler } from 'hono';
import { bearerCheck } from './bearer-auth.ts';
import { invalidApiKey } from './errors.ts';

/** `onRefused`: counts a refusal (outcome `unauthorized`), so key guessing shows in /metrics. */
export function requireApiKey(keys: readonly string[], onRefused: () => void = () => undefined): MiddlewareHandler {
  const matches = bearerCheck(keys);
  return async (c, next) => {
    if (!matches(c.req.header('authorization'))) {
      onRefused();
      return invalidApiKey().toResponse();
    }
    await next();
  };
}
