/**
 * Request fields whose size would cost the server per element or per token: each is bounded, and
 * a request over the bound is one clear 400. (z.union checked a prompt array against all four
 * forms and built one issue per bad element in each: millions for one body.)
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, postJson, startTestServer } from './helpers/server.ts';

describe('bounded request fields', () => {
  let server: RunningServer;
  let completions: string;
  const ok = { prompt: 'Once upon a time', max_tokens: 2 };
  before(async () => {
    server = await startTestServer({ maxBodyBytes: 16 * 1024 * 1024 });
    completions = `${server.url}/v1/completions`;
  });
  after(async () => server.close());

  it('a stop string longer than 256 characters → 400 naming it (the engine checks every held suffix against it at each token)', async () => {
    const e = await assertOpenAIError(await postJson(completions, { ...ok, stop: ['x', 'y'.repeat(257)] }), 400, 'stop[1]');
    assert.match(e.message, /256/);
    assert.equal((await postJson(completions, { ...ok, stop: ['y'.repeat(256)] })).status, 200);
  });

  it('a huge prompt array of the wrong form → one 400 naming the first bad element (checked once, against the form its first element says)', async () => {
    const tokens = new Array<number | string>(1_000_000).fill(5);
    tokens[777_777] = 'x';
    const e = await assertOpenAIError(await postJson(completions, { ...ok, prompt: tokens }), 400, 'prompt');
    assert.match(e.message, /prompt\[777777\] must be an integer token id/);
    const strings = ['a', ...new Array<number>(1_000_000).fill(1)];
    assert.match((await assertOpenAIError(await postJson(completions, { ...ok, prompt: strings }), 400, 'prompt')).message, /prompt\[1\] must be a string/);
    assert.match((await assertOpenAIError(await postJson(completions, { ...ok, prompt: [[1, 2], [3, 'x']] }), 400, 'prompt')).message, /prompt\[1\]\[1\] must be an integer token id/);
    assert.match((await assertOpenAIError(await postJson(completions, { ...ok, prompt: [{ text: 'x' }] }), 400, 'prompt')).message, /neither a string/);
  });
});
