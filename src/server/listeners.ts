/**
 * The sockets: the API listener and, with --admin-port, the admin one (the same app behind both,
 * each side answering 404 for the other's paths); how a client reaches them; closing one without
 * hanging on a client that never reads.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { servedOn } from './admin-port.ts';

type Fetch = (req: Request) => Response | Promise<Response>;

export interface Listeners {
  api: Server;
  /** The --admin-port listener; undefined without one (then /admin is served on `api`). */
  admin: Server | undefined;
}

/** Listen on --port (and --admin-port); when the second fails the first is closed before the error is thrown. */
export async function openListeners(fetch: Fetch, config: { host: string; port: number; adminPort?: number | undefined }): Promise<Listeners> {
  let api: Server | undefined;
  try {
    api = await listen(config.adminPort === undefined ? fetch : servedOn('api', fetch), config.port, config.host);
    const admin = config.adminPort === undefined ? undefined : await listen(servedOn('admin', fetch), config.adminPort, config.host);
    return { api, admin };
  } catch (e) {
    if (api) await closeServer(api, 0);
    throw e;
  }
}

export function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}

/** Where a client reaches a listener: a wildcard host is reported as loopback. */
export function baseUrl(host: string, port: number): string {
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${shown}:${port}`;
}

/** The address a listener is bound to, as logged. */
export function listenAddress(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function listen(fetch: Fetch, port: number, hostname: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, port, hostname }) as Server;
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/**
 * Stop listening and wait for open connections to finish their responses. Idle keep-alive
 * connections are closed at once; any still open after `cutAfterMs` (a client that never reads) are cut.
 */
export async function closeServer(server: Server, cutAfterMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), cutAfterMs);
    force.unref();
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    idle.unref();
    server.close(() => {
      clearTimeout(force);
      clearInterval(idle);
      resolve();
    });
    server.closeIdleConnections();
  });
}
