import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { send } from '../../scripts/faults/client.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { startTestServer } from '../server/helpers/server.ts';

/** bench:faults' client over real HTTP: how a stream, a hang-up mid-stream and an error body are recorded. */
describe('faults client (scripts/faults/client.ts) against a real server', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.close();
  });
  const stream = (extra: object = {}) => ({ path: '/v1/completions', body: { prompt: 'Once upon a time', max_tokens: 8, stream: true, temperature: 0, ignore_eos: true }, statusWaitMs: 30_000, endWaitMs: 60_000, ...extra });

  it('a stream that ends with finish_reason is `finish`, every token event counted', async () => {
    const o = await send(server.url, stream());
    assert.equal(o.status, 200);
    assert.equal(o.end, 'finish');
    assert.deepEqual(o.finishReasons, ['length']);
    assert.ok(o.chunks! >= 8, `chunks ${o.chunks}`);
  });

  it('a client that hangs up after 2 events is `client-abort` with 2 chunks', async () => {
    const o = await send(server.url, stream({ abortAfterChunks: 2 }));
    assert.equal(o.end, 'client-abort');
    assert.equal(o.chunks, 2);
  });

  it('an error body is `body` with its error code', async () => {
    const o = await send(server.url, { ...stream(), body: { prompt: 'x', max_tokens: -1 } });
    assert.equal(o.status, 400);
    assert.equal(o.end, 'body');
    assert.ok(o.code, 'the error code is recorded');
  });
});
