/**
 * Admin events: the service's events (prune-job progress, model swaps) sent to every
 * `/admin/events` WebSocket as JSON.
 * The upgrade is authenticated with the same bearer token as the admin routes; without a configured
 * token, or with a wrong one, the upgrade is refused with an HTTP status and the socket closed.
 * Clients are bounded three ways, so a forgotten dashboard cannot cost the server memory: at most
 * `maxClients` at once (the next upgrade gets 503), a ping every `pingIntervalMs` (a client that did
 * not answer the previous ping is cut), and a client that does not read (more than `maxBufferedBytes`
 * still unsent when the next event comes) is cut instead of buffered for.
 */
import { hostAllowed, hostNotAllowed, type HostPolicy } from './host-check.ts';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { bearerCheck } from './bearer-auth.ts';
import type { ServiceEvent } from '../service/service-events.ts';

/** Where admin events come from (the service). */
export interface EventSource {
  subscribe(listener: (e: ServiceEvent) => void): () => void;
}

export const ADMIN_EVENTS_PATH = '/admin/events';

/** How often clients are pinged; one missed answer and they are cut. */
export const EVENTS_PING_INTERVAL_MS = 15_000;
/** Unsent bytes a client may fall behind by before it is cut. */
export const EVENTS_MAX_BUFFERED_BYTES = 1024 * 1024;
/** Clients only listen; anything they send is small or a mistake. */
const MAX_CLIENT_MESSAGE_BYTES = 4096;

export interface AdminEventOptions {
  /** The admin bearer token; undefined: the socket is off (404), as the admin routes. */
  adminToken: string | undefined;
  /** Most clients at once (--max-event-clients); the upgrade past it is refused with 503. */
  maxClients: number;
  /** Ping period (default EVENTS_PING_INTERVAL_MS). */
  pingIntervalMs?: number;
  /** Unsent bytes past which a client is cut (default EVENTS_MAX_BUFFERED_BYTES). */
  maxBufferedBytes?: number;
  /** Which Host names are answered (host-check.ts), as on every HTTP path; unset: any. */
  hostPolicy?: HostPolicy | undefined;
  /** One line per client cut or refused (default: stderr). */
  log?: (line: string) => void;
}

/** Serve `/admin/events` on the HTTP server's upgrade requests. Returns a closer. */
export function attachAdminEventSocket(server: Server, events: EventSource, options: AdminEventOptions): () => void {
  const { adminToken, maxClients } = options;
  const pingIntervalMs = options.pingIntervalMs ?? EVENTS_PING_INTERVAL_MS;
  const maxBufferedBytes = options.maxBufferedBytes ?? EVENTS_MAX_BUFFERED_BYTES;
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_CLIENT_MESSAGE_BYTES });
  const tokenMatches = bearerCheck(adminToken === undefined ? [] : [adminToken]);
  /** Clients that answered the last ping (or connected since). */
  const answered = new WeakSet<WebSocket>();
  /** Each client's address, for the log. */
  const peers = new WeakMap<WebSocket, string>();

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== ADMIN_EVENTS_PATH) return refuse(socket, 404, 'Not Found');
    if (options.hostPolicy && !hostAllowed(req.headers.host, options.hostPolicy)) return refuse(socket, 403, 'Forbidden', hostNotAllowed(req.headers.host ?? '').message);
    if (adminToken === undefined) return refuse(socket, 404, 'Not Found');
    if (!tokenMatches(req.headers.authorization)) return refuse(socket, 401, 'Unauthorized');
    if (wss.clients.size >= maxClients) {
      log(`admin events: refused a client from ${peer(req)}: ${wss.clients.size} connected, the most allowed (--max-event-clients)`);
      return refuse(socket, 503, 'Service Unavailable', `at most ${maxClients} /admin/events clients at once (--max-event-clients); close one or raise the limit`);
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const from = peer(req);
      peers.set(ws, from);
      answered.add(ws);
      ws.on('pong', () => answered.add(ws));
      const unsubscribe = events.subscribe((e) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        if (ws.bufferedAmount > maxBufferedBytes) {
          log(`admin events: dropped the client from ${from}: it is not reading (${ws.bufferedAmount} bytes unsent, the most is ${maxBufferedBytes})`);
          ws.terminate();
          return;
        }
        ws.send(JSON.stringify(e));
      });
      ws.on('close', unsubscribe);
      ws.on('error', unsubscribe);
    });
  };

  const pinger = setInterval(() => {
    for (const ws of wss.clients) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      if (!answered.has(ws)) {
        log(`admin events: dropped the client from ${peers.get(ws)}: no answer to a ping within ${pingIntervalMs} ms`);
        ws.terminate();
        continue;
      }
      answered.delete(ws);
      ws.ping();
    }
  }, pingIntervalMs);
  pinger.unref();

  server.on('upgrade', onUpgrade);
  return () => {
    clearInterval(pinger);
    server.off('upgrade', onUpgrade);
    for (const ws of wss.clients) ws.close(1001, 'server shutting down');
    wss.close();
  };
}

function peer(req: IncomingMessage): string {
  return `${req.socket.remoteAddress ?? 'unknown'}:${req.socket.remotePort ?? '?'}`;
}

/** An HTTP answer to the upgrade request, then the socket is closed. */
function refuse(socket: Duplex, status: number, reason: string, message = ''): void {
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`);
}
