import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sseResponse } from '../../src/server/sse.ts';

/** Chunks without end, and whether the stream gave them up (as a fan-out's return() cancels its generations). */
function endless() {
  const state = { returned: false, produced: 0 };
  const chunks: AsyncIterable<unknown> = {
    [Symbol.asyncIterator]: () => ({
      next: async () => ({ value: { n: state.produced++ }, done: false }),
      return: async () => {
        state.returned = true;
        return { value: undefined, done: true };
      },
    }),
  };
  return { chunks, state };
}

const onError = () => ({ error: { message: 'x', type: 'server_error', param: null, code: null } });

describe('a stream whose client stops reading', () => {
  it('is given up after the stall time: its chunks stop, its producer is cancelled, the reader sees an error', async () => {
    const { chunks, state } = endless();
    let stalls = 0;
    const reader = sseResponse(chunks, onError, { ms: 200, onStall: () => stalls++ }).body!.getReader();
    await reader.read();
    await reader.read();
    // The client stops reading here.
    await sleep(600);
    assert.equal(stalls, 1);
    assert.ok(state.returned, 'the producer was cancelled');
    const produced = state.produced;
    await sleep(100);
    assert.equal(state.produced, produced, 'nothing more is produced');
    await assert.rejects(async () => {
      for (;;) if ((await reader.read()).done) break;
    }, /read nothing for 200 ms/);
  });

  it('a client that keeps reading, however slowly the chunks come, is never given up', async () => {
    let stalls = 0;
    let i = 0;
    const slow: AsyncIterable<unknown> = {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          await sleep(150);
          return i++ < 4 ? { value: { i }, done: false } : { value: undefined, done: true };
        },
      }),
    };
    const text = await sseResponse(slow, onError, { ms: 100, onStall: () => stalls++ }).text();
    assert.equal(stalls, 0);
    assert.match(text, /\[DONE\]/);
  });

  it('with no stall time it waits as long as the request lives', async () => {
    const { chunks, state } = endless();
    const reader = sseResponse(chunks, onError).body!.getReader();
    await reader.read();
    await sleep(300);
    assert.equal(state.returned, false);
    await reader.cancel();
    assert.ok(state.returned);
  });
});
