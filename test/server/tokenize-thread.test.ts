import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import type { Tokenizer } from '../../src/runtime/tokenizer/types.ts';
import { DEFAULT_CHAT_TEMPLATE, loadChatTemplate } from '../../src/server/chat-template.ts';
import { ApiError } from '../../src/server/errors.ts';
import { runTokenizeJob, TokenizeThread } from '../../src/server/tokenize-thread.ts';

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
    ] as const;
    for (const job of jobs) assert.deepEqual(await thread.run(structuredClone(job) as never), runTokenizeJob(structuredClone(job) as never, tokenizer, template));
  });

  it('leaves the calling thread free while it encodes a large prompt', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const text = 'Once upon a time, there was a little dog named Max. '.repeat(20_000);
    const { tokens } = await thread.run({ op: 'prompt', text, addBos: false, tokenStrs: false });
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
});
