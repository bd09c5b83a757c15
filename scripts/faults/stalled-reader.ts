/**
 * An SSE client that stops reading: a raw `node:net` socket that writes one streaming request and
 * then never reads (the socket is paused, so the kernel's buffers fill and the server's writes
 * back up, as behind a frozen browser tab or a stuck proxy). Later the scenario reads whatever the
 * server left in the connection, within a bounded wait, and classifies it like client.ts does.
 */
import net from 'node:net';
import { assertLoopbackUrl } from '../../loadtest/loopback.ts';
import { bodyFields, type Outcome, StreamEvents } from './client.ts';
import { sseDataOf } from '../lib/sse-data.ts';

export class StalledReader {
  private readonly chunks: Buffer[] = [];
  private closed = false;
  private error: string | undefined;
  private readonly atMs = performance.now();

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => this.chunks.push(d));
    socket.on('close', () => (this.closed = true));
    socket.on('error', (e) => (this.error = (e as { code?: string }).code ?? e.message));
  }

  /** Connect, send `POST path` with `body`, and stop reading at once. */
  static async open(baseUrl: string, path: string, body: Record<string, unknown>, connectWaitMs: number): Promise<StalledReader> {
    const url = assertLoopbackUrl(baseUrl);
    const socket = net.connect({ host: url.hostname, port: Number(url.port) });
    const reader = new StalledReader(socket);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no connection to ${baseUrl} within ${connectWaitMs} ms`)), connectWaitMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const json = JSON.stringify(body);
    socket.write(`POST ${path} HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\nconnection: close\r\n\r\n${json}`);
    socket.pause();
    return reader;
  }

  /** Start reading again; resolves with how the exchange ended once the server closes it or `waitMs` passes. */
  async drain(waitMs: number): Promise<Outcome & { bytes: number }> {
    this.socket.resume();
    const deadline = performance.now() + waitMs;
    while (!this.closed && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const ended = this.closed;
    this.socket.destroy();
    const raw = Buffer.concat(this.chunks);
    const outcome = classifyRaw(raw, ended, this.error);
    return { atMs: this.atMs, ms: performance.now() - this.atMs, bytes: raw.length, ...outcome };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Status, body and how it ended, from a raw HTTP/1.1 response (chunked or not). */
export function classifyRaw(raw: Buffer, closed: boolean, error: string | undefined): Omit<Outcome, 'atMs' | 'ms'> {
  const head = raw.indexOf('\r\n\r\n');
  const headers = raw.subarray(0, Math.max(0, head)).toString('latin1').toLowerCase();
  const status = Number(/^http\/1\.1 (\d{3})/.exec(headers)?.[1] ?? 0);
  if (status === 0 || head < 0) return closed ? { status: 0, end: 'connection', ...(error !== undefined && { detail: error }) } : { status: 0, end: 'no-status' };
  const payload = raw.subarray(head + 4);
  const body = (headers.includes('transfer-encoding: chunked') ? dechunk(payload) : payload).toString('utf8');
  if (!headers.includes('text/event-stream')) return { status, end: closed ? 'body' : 'no-end', ...bodyFields(body) };
  const events = new StreamEvents();
  for (const data of sseDataOf(body)) events.add(data);
  return { status, ...events.outcome(closed) };
}

/** The payload of a chunked transfer encoding (as far as it arrived). */
function dechunk(b: Buffer): Buffer {
  const parts: Buffer[] = [];
  let i = 0;
  for (;;) {
    const nl = b.indexOf('\r\n', i);
    if (nl < 0) break;
    const size = parseInt(b.subarray(i, nl).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(b.subarray(nl + 2, nl + 2 + size));
    i = nl + 2 + size + 2;
  }
  return Buffer.concat(parts);
}
