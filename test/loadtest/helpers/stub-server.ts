/**
 * A stand-in for the completions server with known delays, for timing the load generator:
 *
 * - non-streaming: answers after `delayMs` with `tokens` completion tokens in `usage`;
 * - streaming: sends its headers and an empty-text chunk at once, the first token after
 *   `firstChunkDelayMs`, one more every `tokenIntervalMs` up to `tokens`, then (when the request
 *   asked for it) a usage chunk, then `data: [DONE]`.
 *
 * It counts requests, tracks how many are in flight at once, and can fail or hang chosen ones.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface StubOptions {
  delayMs?: number;
  firstChunkDelayMs?: number;
  tokenIntervalMs?: number;
  tokens?: number;
  /** Streaming: end the stream without `data: [DONE]`. */
  omitDone?: boolean;
  /** Status to answer request n (0-based, in arrival order) with instead, or null to serve it. */
  failWith?: (n: number) => number | null;
  /** Never answer (the client's timeout must end the request). */
  hang?: boolean;
}

export interface StubServer {
  url: string;
  /** Requests received. */
  readonly count: number;
  readonly maxInFlight: number;
  readonly inFlight: number;
  /** Parsed bodies, in arrival order. */
  readonly bodies: Record<string, unknown>[];
  /** performance.now() of each arrival. */
  readonly arrivals: number[];
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startStub(opts: StubOptions = {}): Promise<StubServer> {
  const { delayMs = 50, firstChunkDelayMs = 40, tokenIntervalMs = 10, tokens = 5 } = opts;
  let count = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const bodies: Record<string, unknown>[] = [];
  const arrivals: number[] = [];
  const hanging = new Set<http.ServerResponse>();

  const server = http.createServer((req, res) => {
    const n = count++;
    arrivals.push(performance.now());
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let closed = false;
    let finished = false;
    // Out of flight just before the last byte is written (the client cannot have the whole
    // response earlier, so it cannot have sent its next request yet), or when the client goes away.
    const finish = (): void => {
      if (finished) return;
      finished = true;
      inFlight--;
    };
    res.on('close', () => {
      closed = true;
      finish();
      hanging.delete(res);
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
        bodies.push(body);
        const status = opts.failWith?.(n) ?? null;
        if (status !== null) {
          res.writeHead(status, { 'content-type': 'application/json' });
          finish();
          res.end(JSON.stringify({ error: { message: `stub failure ${status}`, type: 'server_error', param: null, code: null } }));
          return;
        }
        if (opts.hang) {
          hanging.add(res);
          return;
        }
        const base = { id: `cmpl-${n}`, object: 'text_completion', created: 0, model: String(body.model ?? 'stub'), system_fingerprint: null };
        const usage = { prompt_tokens: 3, completion_tokens: tokens, total_tokens: 3 + tokens };
        if (body.stream !== true) {
          await sleep(delayMs);
          if (closed) return;
          res.writeHead(200, { 'content-type': 'application/json' });
          finish();
          res.end(JSON.stringify({ ...base, choices: [{ index: 0, text: 'x'.repeat(tokens), logprobs: null, finish_reason: 'length' }], usage }));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        const send = (obj: unknown): void => {
          res.write(`data: ${JSON.stringify(obj)}\n\n`);
        };
        // An empty-text chunk before any token: TTFT must not stop here.
        send({ ...base, choices: [{ index: 0, text: '', logprobs: null, finish_reason: null }] });
        await sleep(firstChunkDelayMs);
        for (let t = 0; t < tokens; t++) {
          if (closed) return;
          if (t > 0) await sleep(tokenIntervalMs);
          send({ ...base, choices: [{ index: 0, text: `t${t} `, logprobs: null, finish_reason: t === tokens - 1 ? 'length' : null }] });
        }
        const so = body.stream_options as { include_usage?: boolean } | undefined;
        if (so?.include_usage) send({ ...base, choices: [], usage });
        finish();
        if (!opts.omitDone) res.write('data: [DONE]\n\n');
        res.end();
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get count() {
      return count;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    get inFlight() {
      return inFlight;
    },
    bodies,
    arrivals,
    async close() {
      for (const r of hanging) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
