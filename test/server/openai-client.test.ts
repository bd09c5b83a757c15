import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { RunningServer } from '../../src/server/main.ts';
import { postJson, startTestServer } from './helpers/server.ts';

const GOLDEN = ', there was a little girl named Lily';

describe('the server, driven by the official openai client', () => {
  let server: RunningServer;
  let client: OpenAI;
  before(async () => {
    server = await startTestServer({ maxBatch: 8 });
    client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'x', maxRetries: 0 });
  });
  after(async () => server.close());

  it('lists the served model with its id and parameter count', async () => {
    const models = await client.models.list();
    assert.equal(models.data.length, 1);
    const m = models.data[0]! as OpenAI.Models.Model & { parameters: number; compression_ratio: number };
    assert.equal(m.id, 'stories260K');
    assert.equal(m.object, 'model');
    assert.equal(typeof m.created, 'number');
    assert.equal(m.owned_by, 'mop-serve');
    assert.equal(m.parameters, 260032);
    assert.equal(m.compression_ratio, 0);
    assert.equal((await client.models.retrieve('stories260K')).id, 'stories260K');
  });

  it('completes "Once upon a time" greedily with the golden text', async () => {
    const r = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 16, temperature: 0 });
    assert.match(r.id, /^cmpl-[0-9a-f]{32}$/);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, 'stories260K');
    assert.equal(typeof r.created, 'number');
    assert.equal(r.choices.length, 1);
    const c = r.choices[0]!;
    assert.ok(c.text.startsWith(GOLDEN), c.text);
    assert.equal(c.index, 0);
    assert.equal(c.logprobs, null);
    assert.equal(c.finish_reason, 'length');
    assert.deepEqual(r.usage, { prompt_tokens: 5, completion_tokens: 16, total_tokens: 21 });
  });

  it('uses the active model when the request says "default" or omits model', async () => {
    const res = await postJson(server.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { model: string; choices: { text: string }[] };
    assert.equal(body.model, 'stories260K');
    const r = await client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    assert.equal(r.choices[0]!.text, body.choices[0]!.text);
  });

  it('streams the same text as the non-streaming answer, then a usage chunk and [DONE]', async () => {
    const whole = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
    const stream = await client.completions.create({
      model: 'stories260K',
      prompt: 'Once upon a time',
      max_tokens: 24,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.Completions.CompletionUsage | null | undefined;
    let chunks = 0;
    const ids = new Set<string>();
    for await (const chunk of stream) {
      chunks++;
      ids.add(chunk.id);
      assert.equal(chunk.object, 'text_completion');
      if (chunk.choices.length === 0) {
        usage = chunk.usage;
        continue;
      }
      assert.equal(chunk.usage, null, 'chunks before the last carry usage: null');
      text += chunk.choices[0]!.text;
      if (chunk.choices[0]!.finish_reason) finish = chunk.choices[0]!.finish_reason;
    }
    assert.ok(chunks > 5, 'tokens arrive as separate chunks');
    assert.equal(ids.size, 1, 'every chunk has the same id');
    assert.equal(text, whole.choices[0]!.text);
    assert.equal(finish, 'length');
    assert.deepEqual(usage, { prompt_tokens: 5, completion_tokens: 24, total_tokens: 29 });
  });

  it('ends the raw SSE stream with data: [DONE]', async () => {
    const res = await postJson(server.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 3, temperature: 0, stream: true });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const raw = await res.text();
    const events = raw.split('\n\n').filter(Boolean);
    assert.ok(events.every((e) => e.startsWith('data: ')), raw);
    assert.equal(events[events.length - 1], 'data: [DONE]');
    assert.ok(!raw.includes('"usage"'), 'no usage field without stream_options.include_usage');
  });

  it('answers a chat completion through the default template', async () => {
    const r = await client.chat.completions.create({
      model: 'stories260K',
      messages: [
        { role: 'system', content: 'You tell stories.' },
        { role: 'user', content: 'Tell me about a cat.' },
      ],
      max_tokens: 12,
      temperature: 0,
    });
    assert.match(r.id, /^chatcmpl-[0-9a-f]{32}$/);
    assert.equal(r.object, 'chat.completion');
    const c = r.choices[0]!;
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
    assert.ok(c.message.content!.length > 0);
    assert.equal(c.finish_reason, 'length');
    assert.equal(r.usage!.completion_tokens, 12);
    // "system: You tell stories.\nuser: Tell me about a cat.\nassistant:" with BOS.
    assert.ok(r.usage!.prompt_tokens > 10);
  });

  it('streams a chat completion: role first, content deltas, finish, usage', async () => {
    const whole = await client.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hello' }], max_completion_tokens: 16, temperature: 0 });
    const stream = await client.chat.completions.create({
      model: 'stories260K',
      messages: [{ role: 'user', content: 'Hello' }],
      max_completion_tokens: 16,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    assert.deepEqual(chunks[0]!.choices[0]!.delta, { role: 'assistant', content: '' });
    const content = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
    assert.equal(content, whole.choices[0]!.message.content);
    const finish = chunks.flatMap((c) => c.choices).find((ch) => ch.finish_reason);
    assert.equal(finish?.finish_reason, 'length');
    const last = chunks[chunks.length - 1]!;
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage!.completion_tokens, 16);
  });

  it('streams n chat choices interleaved, each with its role chunk and finish', async () => {
    const stream = await client.chat.completions.create({
      model: 'stories260K',
      messages: [{ role: 'user', content: 'Hello' }],
      max_tokens: 10,
      temperature: 1,
      seed: 3,
      n: 2,
      stream: true,
    });
    const text = ['', ''];
    const roles = [0, 0];
    const finishes: (string | null)[] = [null, null];
    for await (const chunk of stream) {
      for (const ch of chunk.choices) {
        if (ch.delta.role) roles[ch.index]!++;
        text[ch.index] += ch.delta.content ?? '';
        if (ch.finish_reason) finishes[ch.index] = ch.finish_reason;
      }
    }
    assert.deepEqual(roles, [1, 1]);
    assert.deepEqual(finishes, ['length', 'length']);
    const whole = await client.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 10, temperature: 1, seed: 3, n: 2 });
    assert.deepEqual(
      whole.choices.map((c) => c.message.content),
      text,
    );
  });

  it('returns the same greedy text for concurrent requests as for the same requests one at a time', async () => {
    const prompts = ['Once upon a time', 'The cat', 'Lily and Ben went to the park', 'One day, a big dog', 'Tom had a red ball', 'The sun was'];
    const ask = async (prompt: string) => (await client.completions.create({ model: 'stories260K', prompt, max_tokens: 40, temperature: 0 })).choices[0]!.text;
    const sequential: string[] = [];
    for (const p of prompts) sequential.push(await ask(p));
    const concurrent = await Promise.all(prompts.map(ask));
    assert.deepEqual(concurrent, sequential);
    assert.equal(new Set(sequential).size, prompts.length);
  });

  it('numbers choices prompt × n + j and gives choice 0 the request seed and each other choice its own, reproducibly', async () => {
    const body = { model: 'stories260K', prompt: ['Once upon a time', 'The dog'], n: 2, max_tokens: 12, temperature: 1, seed: 42 };
    const a = await client.completions.create(body);
    assert.deepEqual(
      a.choices.map((c) => c.index),
      [0, 1, 2, 3],
    );
    const b = await client.completions.create(body);
    assert.deepEqual(
      b.choices.map((c) => c.text),
      a.choices.map((c) => c.text),
      'same seed, same choices',
    );
    assert.notEqual(a.choices[0]!.text, a.choices[1]!.text, 'choices of one prompt differ');
    // Choice 2 is prompt 1 with seed + 0: the same as asking for prompt 1 alone with the seed.
    const single = await client.completions.create({ ...body, prompt: 'The dog', n: 1 });
    assert.equal(single.choices[0]!.text, a.choices[2]!.text);
    assert.equal(a.usage!.completion_tokens, 48);
  });

  it('accepts token-id prompts and batches of them', async () => {
    const text = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 8, temperature: 0, echo: true, logprobs: 0 });
    const promptIds = server.service.active!.tokenizer.encode('Once upon a time');
    assert.equal(promptIds.length, 5);
    const r = await client.completions.create({ model: 'stories260K', prompt: [promptIds, promptIds], max_tokens: 8, temperature: 0 });
    assert.equal(r.choices.length, 2);
    assert.ok(text.choices[0]!.text.endsWith(r.choices[0]!.text), `${text.choices[0]!.text} / ${r.choices[0]!.text}`);
    assert.equal(r.choices[0]!.text, r.choices[1]!.text);
  });

  it('returns completion logprobs with echoed prompt tokens first (null logprobs) and text offsets', async () => {
    const r = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 3, echo: true });
    const c = r.choices[0]!;
    assert.ok(c.text.startsWith('Once upon a time, there'), c.text);
    const lp = c.logprobs!;
    assert.equal(lp.tokens!.length, 5 + 6);
    assert.equal(lp.token_logprobs!.length, 11);
    assert.equal(lp.token_logprobs![0], null);
    for (let i = 5; i < 11; i++) {
      assert.ok(lp.token_logprobs![i]! <= 0);
      const top = lp.top_logprobs![i]!;
      assert.ok(Object.keys(top).length >= 1 && Object.keys(top).length <= 4);
      // Greedy: the chosen token is the most likely one.
      assert.equal(Math.max(...Object.values(top)), lp.token_logprobs![i]);
    }
    const offsets = lp.text_offset!;
    assert.ok(offsets.every((o, i) => i === 0 || o >= offsets[i - 1]!));
    assert.equal(offsets[5], 'Once upon a time'.length);
  });

  it('returns chat logprobs in the content format', async () => {
    const r = await client.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2 });
    const content = r.choices[0]!.logprobs!.content!;
    assert.equal(content.length, 4);
    for (const t of content) {
      assert.equal(typeof t.token, 'string');
      assert.ok(t.logprob <= 0);
      assert.ok(Array.isArray(t.bytes));
      assert.equal(t.top_logprobs.length, 2);
      assert.equal(t.top_logprobs[0]!.logprob, t.logprob);
    }
  });

  it('stops before a stop string and reports finish_reason stop', async () => {
    const r = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stop: ['Lily'] });
    assert.equal(r.choices[0]!.text, ', there was a little girl named ');
    assert.equal(r.choices[0]!.finish_reason, 'stop');
  });
});
