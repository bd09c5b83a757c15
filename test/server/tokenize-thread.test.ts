import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import type { Tokenizer } from '../../src/runtime/tokenizer/types.ts';
import { DEFAULT_CHAT_TEMPLATE, loadChatTemplate } from '../../src/server/chat-template.ts';
import { RequestAbortedError, RequestTimeoutError } from '../../src/runtime/engine/errors.ts';
import { ApiError } from '../../src/server/errors.ts';
import { runTokenizeJob, type TokenizeJob, TokenizeThread } from '../../src/server/tokenize-thread.ts';

const STORY = 'Once upon a time, there was a little dog named Max. ';
/** A prompt that takes a second or more to encode. */
const LARGE = STORY.repeat(20_000);

describe('the tokenizer thread', () => {
  let thread: TokenizeThread;
  let tokenizer: Tokenizer;
  const template = loadChatTemplate(undefined, DEFAULT_CHAT_TEMPLATE);
  before(async () => {
    const model = await loadModel(defaultModelPath());
    tokenizer = createTokenizer(model.tokenizer);
    thread = new TokenizeThread({ tokenizer: model.tokenizer, chatTemplate: DEFAULT_CHAT_TEMPLATE });
  });
  after(() => thread.close());

  it('gives the tokens, token texts and text the HTTP thread would', async () => {
    const jobs = [
      { op: 'prompt', text: 'Once upon a time', addBos: true, tokenStrs: true },
      { op: 'chat', messages: [{ role: 'user', content: 'Hi there' }], addGenerationPrompt: true, tokenStrs: false },
      { op: 'detokenize', tokens: tokenizer.encode('The dog ran.', { addBos: false }) },
      { op: 'prompts', texts: ['Once upon a time', 'The dog ran.'], addBos: true },
      { op: 'chat', messages: [{ role: 'user', content: 'Weather?' }], addGenerationPrompt: true, tokenStrs: false, tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object' } } }] },
    ] as const;
    for (const job of jobs) assert.deepEqual(await thread.run(structuredClone(job) as never), runTokenizeJob(structuredClone(job) as never, tokenizer, template));
  });

  it('leaves the calling thread free while it encodes a large prompt', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const { tokens } = await thread.run({ op: 'prompt', text: LARGE, addBos: false, tokenStrs: false });
    clearInterval(timer);
    assert.ok(tokens!.length > 100_000);
    // Inline, the loop would not turn once until the encode returned.
    assert.ok(ticks >= 5, `the event loop turned ${ticks} times during the encode`);
  });

  it('answers a conversation the template refuses with the 400 the HTTP thread gives', async () => {
    const strict = new TokenizeThread({ tokenizer: (await loadModel(defaultModelPath())).tokenizer, chatTemplate: "{{ raise_exception('no chats here') }}" });
    try {
      await assert.rejects(strict.run({ op: 'chat', messages: [{ role: 'user', content: 'x' }], addGenerationPrompt: true, tokenStrs: false }), (e: unknown) => e instanceof ApiError && e.status === 400 && e.param === 'messages' && /no chats here/.test(e.message));
    } finally {
      await strict.close();
    }
  });

  it('answers a short job on a second thread while the first encodes a large prompt', async () => {
    let largeDone = false;
    const large = thread.run({ op: 'prompt', text: LARGE, addBos: true, tokenStrs: false }).then(() => (largeDone = true));
    await new Promise((r) => setTimeout(r, 50));
    const { tokens } = await thread.run({ op: 'prompt', text: 'The dog ran.', addBos: true, tokenStrs: false });
    assert.deepEqual(tokens, tokenizer.encode('The dog ran.', { addBos: true }));
    assert.equal(largeDone, false, 'the short job waited for the large one');
    await large;
  });
});

describe('the tokenizer threads give up jobs nobody waits for', () => {
  let source: Awaited<ReturnType<typeof loadModel>>['tokenizer'];
  const large: TokenizeJob = { op: 'prompt', text: LARGE.repeat(2), addBos: true, tokenStrs: false };
  before(async () => (source = (await loadModel(defaultModelPath())).tokenizer));

  it('a job whose client goes away fails at once, queued or running, and the threads go on', async () => {
    const pool = new TokenizeThread({ tokenizer: source, chatTemplate: DEFAULT_CHAT_TEMPLATE }, { threads: 1 });
    try {
      await pool.run({ op: 'prompt', text: 'warm', addBos: true, tokenStrs: false });
      const running = new AbortController();
      const queued = new AbortController();
      const t0 = performance.now();
      const first = pool.run(large, running.signal);
      const second = pool.run(large, queued.signal);
      queued.abort();
      await assert.rejects(second, RequestAbortedError);
      await new Promise((r) => setTimeout(r, 100));
      running.abort();
      await assert.rejects(first, RequestAbortedError);
      const abandonedMs = performance.now() - t0;
      // The thread that ran it is stopped; a fresh one takes the next job.
      await pool.run({ op: 'prompt', text: 'warm', addBos: true, tokenStrs: false });
      const t1 = performance.now();
      await pool.run(large);
      const encodeMs = performance.now() - t1;
      assert.ok(abandonedMs < encodeMs / 2, `abandoning took ${Math.round(abandonedMs)} ms; the encode takes ${Math.round(encodeMs)} ms`);
      await assert.rejects(pool.run(large, AbortSignal.abort()), RequestAbortedError);
    } finally {
      await pool.close();
    }
  });

  it('with every thread busy and the queue full, one more job is a 429 with Retry-After, and the queue goes on', async () => {
    const pool = new TokenizeThread({ tokenizer: source, chatTemplate: DEFAULT_CHAT_TEMPLATE }, { threads: 1, maxQueued: 1 });
    try {
      const running = new AbortController();
      const first = pool.run(large, running.signal);
      const second = pool.run({ op: 'prompt', text: 'queued', addBos: true, tokenStrs: false });
      await assert.rejects(pool.run({ op: 'prompt', text: 'one too many', addBos: true, tokenStrs: false }), (e: unknown) => e instanceof ApiError && e.status === 429 && e.code === 'queue_full' && e.headers['retry-after'] === '1');
      running.abort();
      await assert.rejects(first, RequestAbortedError);
      assert.ok((await second).tokens!.length > 1);
      assert.ok((await pool.run({ op: 'prompt', text: 'after', addBos: true, tokenStrs: false })).tokens!.length > 1);
    } finally {
      await pool.close();
    }
  });

  it('a job past the request deadline fails with the request timeout', async () => {
    const pool = new TokenizeThread({ tokenizer: source, chatTemplate: DEFAULT_CHAT_TEMPLATE }, { timeoutMs: 300 });
    try {
      await assert.rejects(pool.run(large), (e: unknown) => e instanceof RequestTimeoutError && /300 ms/.test(e.message));
    } finally {
      await pool.close();
    }
  });

  it('an unexpected failure on the thread is logged with its cause and answered without internals', async () => {
    const lines: string[] = [];
    const pool = new TokenizeThread({ tokenizer: source, chatTemplate: DEFAULT_CHAT_TEMPLATE }, { log: (l) => lines.push(l) });
    try {
      await assert.rejects(pool.run({ op: 'detokenize', tokens: null as never }), (e: unknown) => e instanceof ApiError && e.status === 500 && e.message === 'Internal server error.');
      assert.match(lines.join('\n'), /internal error on the tokenizer thread: tokenizing failed: TypeError/);
      assert.deepEqual(await pool.run({ op: 'detokenize', tokens: [] }), { text: '' });
    } finally {
      await pool.close();
    }
  });

  it('close fails the jobs in flight as refused by a server shutting down', async () => {
    const pool = new TokenizeThread({ tokenizer: source, chatTemplate: DEFAULT_CHAT_TEMPLATE });
    const refused = assert.rejects(pool.run(large), (e: unknown) => e instanceof ApiError && e.status === 503 && /shutting down/.test(e.message));
    await new Promise((r) => setTimeout(r, 50));
    await pool.close();
    await refused;
  });
});
