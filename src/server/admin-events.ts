/**
 * Admin events: prune-job progress and model swaps, published to every `/admin/events` WebSocket.
 * The upgrade is authenticated with the same bearer token as the admin routes; without a configured
 * token, or with a wrong one, the upgrade is refused with an HTTP status and the socket closed.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { bearerMatches } from './admin-auth.ts';
import type { PruneJobView } from './prune-jobs.ts';
import type { TrafficSplit } from './registry.ts';

export type AdminEvent =
  | { type: 'job'; job: PruneJobView }
  | { type: 'model_added'; id: string; compressionRatio: number; parameters: number }
  | { type: 'model_removed'; id: string }
  | { type: 'active_changed'; active: string; previous: string | undefined }
  | { type: 'split_changed'; split: TrafficSplit | null };

export class AdminEvents {
  private readonly listeners = new Set<(e: AdminEvent) => void>();

  publish(event: AdminEvent): void {
    for (const l of this.listeners) l(event);
  }

  subscribe(listener: (e: AdminEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export const ADMIN_EVENTS_PATH = '/admin/events';

/** Serve `/admin/events` on the HTTP server's upgrade requests. Returns a closer. */
export function attachAdminEventSocket(server: Server, events: AdminEvents, adminToken: string | undefined): () => void {
  const wss = new WebSocketServer({ noServer: true });
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== ADMIN_EVENTS_PATH) return refuse(socket, 404, 'Not Found');
    if (adminToken === undefined) return refuse(socket, 404, 'Not Found');
    if (!bearerMatches(req.headers.authorization, adminToken)) return refuse(socket, 401, 'Unauthorized');
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
