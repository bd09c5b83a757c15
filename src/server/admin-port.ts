/**
 * --admin-port: one app, two listeners. The admin listener answers only /admin/*, the API listener
 * everything else, and each answers 404 (OpenAI's shape) for the other's paths. The path is read as
 * hono routes it (percent-decoded), with repeated slashes collapsed, so no spelling of /admin
 * reaches the admin routes through the API port.
 */
import { getPath } from 'hono/utils/url';
import { notFound } from './errors.ts';

type Fetch = (req: Request) => Response | Promise<Response>;

/** Whether a request targets the admin API (/admin or below). */
export function isAdminRequest(req: Request): boolean {
  const path = getPath(req).replace(/\/{2,}/g, '/').toLowerCase();
  return path === '/admin' || path.startsWith('/admin/');
}

/** `fetch` restricted to one side: the admin routes only, or everything but them. */
export function servedOn(side: 'api' | 'admin', fetch: Fetch): Fetch {
  return (req) => (isAdminRequest(req) === (side === 'admin') ? fetch(req) : notFound(`${req.method} ${new URL(req.url).pathname}`).toResponse());
}
