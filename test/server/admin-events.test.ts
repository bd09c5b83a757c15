/**
 * /admin/events bounds: a client cap (503 past it, a slot frees when a client leaves), pings that
 * cut clients which do not answer, and slow consumers cut instead of buffered for. A plain HTTP
 * server and a hand-driven event source stand in for the model server.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, describe, it } from 'node:test';
import WebSocket from 'ws';
import { attachAdminEventSocket, type AdminEventOptions, type EventSource } from '../../src/server/admin-events.ts';
import type { ServiceEvent } from '../../src/service/service-events.ts';
import { waitFor } from './helpers/server.ts';

const TOKEN = 'events-test-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };

/** An event source the test publishes to, counting its listeners (one per connected client). */
class TestEvents implements EventSource {
  readonly listeners = new Set<(e: ServiceEvent) => void>();
  subscribe(listener: (e: ServiceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  publish(e: ServiceEvent): void {
    for (const l of this.listeners) l(e);
  }
}

interface Harness {
  url: string;
  events: TestEvents;
  logs: string[];
  close(): Promise<void>;
}

const open: Harness[] = [];
const sockets: WebSocket[] = [];

async function harness(options: Partial<AdminEventOptions> = {}): Promise<Harness> {
  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const events = new TestEvents();
  const logs: string[] = [];
  const closeEvents = attachAdminEventSocket(server, events, { adminToken: TOKEN, maxClients: 16, log: (l) => logs.push(l), ...options });
  const h: Harness = {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/admin/events`,
    events,
    logs,
    close: async () => {
      closeEvents();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  open.push(h);
  return h;
}

/** Connects; resolves with the open socket, or rejects with `status <code>` when the upgrade is refused. */
function connect(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: auth, ...options });
    sockets.push(ws);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => reject(new Error(`status ${res.statusCode}: ${body}`)));
    });
    ws.once('error', reject);
  });
}

const closed = (ws: WebSocket) => new Promise<number>((resolve) => (ws.readyState === WebSocket.CLOSED ? resolve(1006) : ws.once('close', (code) => resolve(code))));

afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  for (const h of open.splice(0)) await h.close();
});

describe('/admin/events', () => {
  it('still refuses a wrong token (401) and every other path (404)', async () => {
    const h = await harness();
    await assert.rejects(connect(h.url, { headers: { authorization: 'Bearer wrong-token-wrong-token' } }), /status 401/);
    await assert.rejects(connect(h.url.replace('/admin/events', '/admin/other')), /status 404/);
  });

  it('admits at most maxClients at once, answers the next with 503, and frees a slot when a client leaves', async () => {
    const h = await harness({ maxClients: 2 });
    const first = await connect(h.url);
    await connect(h.url);
    await assert.rejects(connect(h.url), /status 503: at most 2 \/admin\/events clients/);
    assert.equal(h.events.listeners.size, 2);
    assert.ok(h.logs.some((l) => /refused a client .*2 connected/.test(l)), h.logs.join('\n'));
    first.close();
    await waitFor(() => h.events.listeners.size === 1, 3000, 'the server to see the client leave');
    const third = await connect(h.url);
    h.events.publish({ type: 'model_removed', id: 'x' });
    const message = await new Promise<string>((resolve) => third.once('message', (m) => resolve(String(m))));
    assert.deepEqual(JSON.parse(message), { type: 'model_removed', id: 'x' });
  });

  it('cuts a client that does not answer pings; one that answers stays', async () => {
    const h = await harness({ pingIntervalMs: 500 });
    const silent = await connect(h.url, { autoPong: false });
    const healthy = await connect(h.url);
    let pings = 0;
    silent.on('ping', () => pings++);
    const timeout = new Promise<number>((r) => setTimeout(() => r(-1), 5000).unref());
    const code = await Promise.race([closed(silent), timeout]);
    assert.equal(code, 1006, 'the silent client was cut (no closing handshake)');
    assert.ok(pings >= 1, 'it was pinged first');
    assert.ok(h.logs.some((l) => /no answer to a ping within 500 ms/.test(l)), h.logs.join('\n'));
    // The healthy client answered every ping meanwhile and still gets events.
    assert.equal(healthy.readyState, WebSocket.OPEN);
    h.events.publish({ type: 'model_removed', id: 'y' });
    assert.match(await new Promise<string>((resolve) => healthy.once('message', (m) => resolve(String(m)))), /"id":"y"/);
  });

  it('cuts a client that stops reading once it is maxBufferedBytes behind, with one log line; a reading client keeps up', async () => {
    const maxBufferedBytes = 64 * 1024;
    const h = await harness({ maxBufferedBytes });
    const slow = await connect(h.url);
    const reader = await connect(h.url);
    let received = 0;
    reader.on('message', () => received++);
    slow.pause();
    const event: ServiceEvent = { type: 'model_removed', id: 'x'.repeat(8 * 1024) };
    // The kernel's socket buffers take a few MB first; bounded in count and time either way.
    let published = 0;
    const until = Date.now() + 20_000;
    while (h.events.listeners.size === 2 && published < 20_000 && Date.now() < until) {
      h.events.publish(event);
      published++;
      await nextTurn();
    }
    await waitFor(() => h.events.listeners.size === 1, 3000, 'the slow client to be cut');
    const drops = h.logs.filter((l) => /not reading/.test(l));
    assert.equal(drops.length, 1, h.logs.join('\n'));
    assert.match(drops[0]!, new RegExp(`the most is ${maxBufferedBytes}`));
    await waitFor(() => received === published, 10_000, `the reading client to get all ${published} events (has ${received})`);
    assert.equal(reader.readyState, WebSocket.OPEN);
  });
});
