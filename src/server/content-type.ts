/**
 * Bodies must be declared as JSON. A web page can POST `text/plain` (or a form) to any host without
 * a CORS preflight, so a server that parses whatever arrives would run generations and admin changes
 * for any site its users visit; `application/json` needs a preflight, which CORS then governs.
 */
import type { MiddlewareHandler } from 'hono';
import { unsupportedMediaType } from './errors.ts';

/** Methods whose body a handler reads. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** `application/json`, with any parameters (`; charset=utf-8`), in any case. */
export function isJsonMediaType(contentType: string | undefined): boolean {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase() === 'application/json';
}

/** Whether the request declares a body: a non-zero Content-Length, or a chunked one. */
function carriesBody(headers: Headers): boolean {
  const length = headers.get('content-length');
  return headers.has('transfer-encoding') || (length !== null && length.trim() !== '0');
}

/**
 * 415 `unsupported_media_type` for a POST/PUT/PATCH/DELETE that carries a body not declared as
 * `application/json`, before the body is read; `onRefused` counts it. Bodyless requests pass.
 */
export function requireJsonBody(onRefused: () => void = () => {}): MiddlewareHandler {
  return async (c, next) => {
    const contentType = c.req.header('content-type');
    if (BODY_METHODS.has(c.req.method) && carriesBody(c.req.raw.headers) && !isJsonMediaType(contentType)) {
      onRefused();
      return unsupportedMediaType(contentType).toResponse();
    }
    await next();
  };
}
