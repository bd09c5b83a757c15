/**
 * A prompt of a few MiB takes seconds to encode. Over real HTTP: while one is being encoded for
 * /v1/completions or /v1/chat/completions, /health and a small request on the same server answer
 * promptly, and the big request ends exactly as it always did (refused for its context length).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { INLINE_ENCODE_MAX_SIZE } from '../../src/server/prompt-encoding.ts';
import { assertOpenAIError, okJson, postJson, scrape, startTestServer, waitFor } from './helpers/server.ts';

const MiB = 1024 * 1024;
const SENTENCE = 'Once upon a time, there was a little dog named Max who loved to run in the park. ';
const HUGE = SENTENCE.repeat(Math.ceil((4 * MiB) / SENTENCE.length)).slice(0, 4 * MiB);

interface Timed {
  status: number;
  text: string;
  ms: number;
}

async function timedPost(url: string, body: unknown, signal?: AbortSignal): Promise<Timed> {
  const t0 = performance.now();
  const res = await postJson(url, body, signal ? { signal } : {});
  const text = await res.text();
  return { status: res.status, text, ms: performance.now() - t0 };
}

/** While `big` runs: /health probed every 100 ms, and `small` sent once; their latencies, and the big request's outcome and time. */
async function probeWhile(baseUrl: string, path: string, big: unknown, small: unknown): Promise<{ big: Timed; health: number[]; small: Timed; smallBeforeBig: boolean }> {
  let bigDone = false;
  const bigRun = timedPost(baseUrl + path, big).finally(() => (bigDone = true));
  // Time for the body to arrive and its encoding to begin.
  await sleep(300);
  let smallBeforeBig = false;
  const smallRun = timedPost(baseUrl + path, small).finally(() => (smallBeforeBig = !bigDone));
  const health: number[] = [];
  while (!bigDone && health.length < 600) {
    const t0 = performance.now();
    const res = await fetch(`${baseUrl}/health`);
    assert.equal(res.status, 200, await res.text());
    health.push(performance.now() - t0);
    await sleep(100);
  }
  return { big: await bigRun, health, small: await smallRun, smallBeforeBig };
}

function assertResponsive(r: Awaited<ReturnType<typeof probeWhile>>, t: TestContext): void {
  const slowest = Math.max(...r.health);
  t.diagnostic(`big request ${Math.round(r.big.ms)} ms; ${r.health.length} /health probes, slowest ${Math.round(slowest)} ms; small request ${Math.round(r.small.ms)} ms`);
  assert.ok(slowest < r.big.ms / 4, `/health took up to ${Math.round(slowest)} ms while the big request took ${Math.round(r.big.ms)} ms`);
  // The encode must take long enough for the comparison to mean something.
  assert.ok(r.big.ms > 1000, `the big request took only ${Math.round(r.big.ms)} ms`);
  assert.ok(r.health.length >= 3, `only ${r.health.length} health probes ran while the big prompt was encoded`);
  assert.equal(r.small.status, 200, r.small.text);
  assert.ok(r.smallBeforeBig, 'the small request was answered only after the big one');
  assert.ok(r.small.ms < r.big.ms / 2, `the small request took ${Math.round(r.small.ms)} ms while the big one took ${Math.round(r.big.ms)} ms`);
}

async function assertContextLength(t: Timed, param: string): Promise<void> {
  const err = await assertOpenAIError(new Response(t.text, { status: t.status, headers: { 'content-type': 'application/json' } }), 400, param);
  assert.equal(err.code, 'context_length_exceeded');
  assert.match(err.message, /maximum context length is 512 tokens, but the prompt has \d{6,} tokens/);
}

describe('a prompt of several MiB is encoded off the HTTP thread', () => {
  let s: RunningServer;
  // The slowest big request seen, to bound what a cancelled one may take.
  let encodeMs = 0;
  before(async () => (s = await startTestServer({ maxBodyBytes: 5 * MiB })));
  after(async () => s.close());

  it('/v1/completions: /health and a small completion answer while a 4 MiB prompt is encoded; the big prompt is refused for its context length, as before', async (t) => {
    const r = await probeWhile(s.url, '/v1/completions', { prompt: HUGE, max_tokens: 1 }, { prompt: 'Once upon a time', max_tokens: 1 });
    encodeMs = Math.max(encodeMs, r.big.ms);
    await assertContextLength(r.big, 'prompt');
    assertResponsive(r, t);
  });

  it('/v1/chat/completions: /health and a small chat answer while a 4 MiB message is rendered and encoded; the big chat is refused for its context length, as before', async (t) => {
    const r = await probeWhile(s.url, '/v1/chat/completions', { messages: [{ role: 'user', content: HUGE }], max_tokens: 1 }, { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 });
    encodeMs = Math.max(encodeMs, r.big.ms);
    await assertContextLength(r.big, 'messages');
    assertResponsive(r, t);
  });

  it('counts a prompt encoded on the threads as before: usage with echo, and the context-length 400', async () => {
    const tokenizer = createTokenizer((await loadModel(defaultModelPath())).tokenizer);
    const count = (text: string) => tokenizer.encode(text, { addBos: true }).length;
    const long = SENTENCE.repeat(Math.ceil((2 * INLINE_ENCODE_MAX_SIZE) / SENTENCE.length));
    const pair = [long.slice(0, INLINE_ENCODE_MAX_SIZE), long.slice(INLINE_ENCODE_MAX_SIZE)];
    const echoed = await okJson<{ usage: { prompt_tokens: number }; choices: { text: string }[] }>(postJson(`${s.url}/v1/completions`, { prompt: pair, max_tokens: 0, echo: true }));
    assert.equal(echoed.usage.prompt_tokens, count(pair[0]!) + count(pair[1]!));
    assert.deepEqual(echoed.choices.map((c) => c.text), pair);
    const refused = await assertOpenAIError(await postJson(`${s.url}/v1/completions`, { prompt: long, max_tokens: 1 }), 400, 'prompt');
    assert.match(refused.message, new RegExp(`the prompt has ${count(long)} tokens`));
    const messages = [{ role: 'user', content: long }];
    const tokenized = await okJson<{ count: number }>(postJson(`${s.url}/tokenize`, { messages }));
    const chatRefused = await assertOpenAIError(await postJson(`${s.url}/v1/chat/completions`, { messages, max_tokens: 1 }), 400, 'messages');
    assert.match(chatRefused.message, new RegExp(`the prompt has ${tokenized.count} tokens`));
  });

  it('a client that disconnects while its big prompt is encoded is counted aborted at once, not when the encode would have ended', async (t) => {
    const aborted = async () => (await scrape(s.url)).get('mop_requests_total{model="stories260K",outcome="aborted"}') ?? 0;
    const before = await aborted();
    const controller = new AbortController();
    const t0 = performance.now();
    const run = timedPost(`${s.url}/v1/completions`, { prompt: HUGE, max_tokens: 1 }, controller.signal).catch((e: unknown) => e);
    await sleep(300);
    controller.abort();
    assert.ok((await run) instanceof Error);
    await waitFor(async () => (await aborted()) > before, Math.max(encodeMs, 5000), 'the aborted request to be counted');
    const ms = performance.now() - t0;
    t.diagnostic(`the abandoned request was counted after ${Math.round(ms)} ms`);
    assert.ok(ms < encodeMs / 2, `the abandoned request was counted after ${Math.round(ms)} ms; an encode takes ${Math.round(encodeMs)} ms`);
  });
});
