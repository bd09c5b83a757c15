import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import type { Tokenizer } from '../../src/runtime/tokenizer/types.ts';
import { DEFAULT_CHAT_TEMPLATE, loadChatTemplate } from '../../src/server/chat-template.ts';
import { encodeChat, encodeTexts, exceedsSize, INLINE_ENCODE_MAX_SIZE, type PromptEncoding } from '../../src/server/prompt-encoding.ts';
import { preparePrompts } from '../../src/server/prompt.ts';
import { ApiError } from '../../src/server/errors.ts';
import { runTokenizeJob, type TokenizeJob } from '../../src/server/tokenize-thread.ts';

describe('prompt encoding: small prompts inline, larger ones on the tokenizer threads', () => {
  let tokenizer: Tokenizer;
  const chatTemplate = loadChatTemplate(undefined, DEFAULT_CHAT_TEMPLATE);
  const signal = new AbortController().signal;
  /** Jobs sent to the (stand-in) threads, run there as the real threads run them. */
  let sent: TokenizeJob[];
  let encoding: PromptEncoding;
  before(async () => {
    tokenizer = createTokenizer((await loadModel(defaultModelPath())).tokenizer);
    const thread = {
      run: (job: TokenizeJob, s?: AbortSignal) => {
        assert.equal(s, signal, 'the wait ends with the client connection');
        sent.push(job);
        return Promise.resolve(runTokenizeJob(job, tokenizer, chatTemplate));
      },
    };
    encoding = { thread, tokenizer, chatTemplate, signal };
  });

  it('encodes a short prompt inline and a long one (or many that add up) on the threads, to the same tokens', async () => {
    const short = 'Once upon a time';
    const long = 'a'.repeat(INLINE_ENCODE_MAX_SIZE + 1);
    const many = Array.from({ length: 8 }, (_, i) => `${i} ${'b'.repeat(INLINE_ENCODE_MAX_SIZE / 8)}`);
    for (const [texts, onThread] of [[[short], false], [[long], true], [many, true]] as const) {
      sent = [];
      assert.deepEqual(await encodeTexts([...texts], encoding), texts.map((t) => tokenizer.encode(t, { addBos: true })));
      assert.equal(sent.length, onThread ? 1 : 0, `${texts.length} text(s) of ${texts[0]!.length} characters`);
    }
  });

  it('decodes a token-id prompt only to echo it, and a long one on the threads', async () => {
    const ids = tokenizer.encode('Once upon a time there was a dog. '.repeat(70), { addBos: true });
    assert.ok(ids.length > INLINE_ENCODE_MAX_SIZE / 2 && ids.length < 1024, `${ids.length} tokens`);
    for (const [tokens, echo, onThread] of [[ids.slice(0, 8), true, false], [ids, true, true], [ids, false, false]] as const) {
      sent = [];
      const [p] = await preparePrompts([...tokens], encoding, { context: 1024, echo });
      assert.deepEqual(p!.tokens, tokens);
      assert.equal(p!.text, echo ? tokenizer.decode([...tokens]) : '');
      assert.deepEqual(sent.map((j) => j.op), onThread ? ['detokenize'] : [], `${tokens.length} tokens, echo ${echo}`);
    }
  });

  it('refuses a prompt longer than the context before decoding or echoing it, in every form', async () => {
    const ids = Array.from({ length: 600 }, (_, i) => 3 + (i % 50));
    for (const [prompt, param] of [[ids, 'prompt'], [[ids.slice(0, 4), ids], 'prompt[1]']] as const) {
      sent = [];
      await assert.rejects(
        preparePrompts(prompt as number[] | number[][], encoding, { context: 512, echo: true }),
        (e: unknown) => e instanceof ApiError && e.status === 400 && e.code === 'context_length_exceeded' && e.param === param && /the prompt has 600 tokens/.test(e.message),
      );
      assert.deepEqual(sent, [], 'nothing was decoded');
    }
    const text = 'Once upon a time. '.repeat(200);
    await assert.rejects(preparePrompts(text, encoding, { context: 512, echo: true }), (e: unknown) => e instanceof ApiError && e.code === 'context_length_exceeded' && e.param === 'prompt');
  });

  it('renders a chat on the threads when its messages or its tools are large, with the same tokens', async () => {
    const tools = [{ type: 'function', function: { name: 'weather', description: 'w'.repeat(INLINE_ENCODE_MAX_SIZE), parameters: { type: 'object' } } }];
    const messages = [{ role: 'user' as const, content: 'Weather in Paris?' }];
    for (const [toolList, onThread] of [[undefined, false], [tools, true]] as const) {
      sent = [];
      const expected = chatTemplate.encode(messages, tokenizer, { addGenerationPrompt: true, ...(toolList && { tools: toolList }) });
      assert.deepEqual(await encodeChat(messages, toolList ? [...toolList] : undefined, encoding), expected);
      assert.equal(sent.length, onThread ? 1 : 0);
    }
  });

  it('measures a JSON value only up to the limit', () => {
    assert.equal(exceedsSize('abc', 10), false);
    assert.equal(exceedsSize('a'.repeat(11), 10), true);
    assert.equal(exceedsSize({ role: 'user', content: 'x'.repeat(90) }, 100), true);
    assert.equal(exceedsSize([['ab'], { k: null }], 100), false);
    // A huge value is not walked to its end.
    const longArray = new Array(2_000_000).fill(0);
    const wideObject = Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`k${i}`, i]));
    const t0 = performance.now();
    assert.equal(exceedsSize(longArray, INLINE_ENCODE_MAX_SIZE), true);
    assert.equal(exceedsSize(wideObject, INLINE_ENCODE_MAX_SIZE), true);
    assert.ok(performance.now() - t0 < 1000);
  });
});
