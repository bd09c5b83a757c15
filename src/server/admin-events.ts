/**
 * Admin events: the service's events (prune-job progress, model swaps) sent to every
 * `/admin/events` WebSocket as JSON.
 * The upgrade is authenticated with the same bearer token as the admin routes; without a configured
 * token, or with a wrong one, the upgrade is refused with an HTTP status and the socket closed.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { bearerCheck } from './bearer-auth.ts';
import type { ServiceEvent } from '../service/service-events.ts';

/** Where admin events come from (the service). */
export interface EventSource {
  subscribe(listener: (e: ServiceEvent) => void): () => void;
}

export const ADMIN_EVENTS_PATH = '/admin/events';

/** Serve `/admin/events` on the HTTP server's upgrade requests. Returns a closer. */
export function attachAdminEventSocket(server: Server, events: EventSource, adminToken: string | undefined): () => void {
  const wss = new WebSocketServer({ noServer: true });
  const tokenMatches = bearerCheck(adminToken === undefined ? [] : [adminToken]);
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== ADMIN_EVENTS_PATH) return refuse(socket, 404, 'Not Found');
    if (adminToken === undefined) return refuse(socket, 404, 'Not Found');
    if (!tokenMatches(req.headers.authorization)) return refuse(socket, 401, 'Unauthorized');
    wss.handleUpgrade(req, socket, head, (ws) => {
      const unsubscribe = events.subscribe((e) => ws.send(JSON.stringify(e)));
      ws.on('close', unsubscribe);
      ws.on('error', unsubscribe);
    });
  };
  server.on('upgrade', onUpgrade);
  return () => {
    server.off('upgrade', onUpgrade);
    for (const ws of wss.clients) ws.close(1001, 'server shutting down');
    wss.close();
  };
}

function refuse(socket: Duplex, status: number, reason: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
