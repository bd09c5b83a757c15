/**
 * CORS for /v1, on only when the operator names the origins (`--allowed-origins`): browsers on those
 * origins may call the API with an API key (`authorization`) and a JSON body (`content-type`); the
 * preflight is answered here. Without the option no response carries Access-Control-Allow-Origin,
 * so browsers keep other sites' pages from reading anything.
 */
import type { MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';

export function corsFor(origins: readonly string[]): MiddlewareHandler {
  return cors({
    origin: origins.includes('*') ? '*' : [...origins],
    allowMethods: ['GET', 'POST'],
    allowHeaders: ['authorization', 'content-type'],
    // A browser may read the back-off hint of a 429 or 503.
    exposeHeaders: ['retry-after'],
    maxAge: 600,
  });
}
