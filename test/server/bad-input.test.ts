import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, postJson, scrape, startTestServer } from './helpers/server.ts';

const MAX_BODY = 16 * 1024;

describe('bad input is answered with an OpenAI error, and the server keeps working', () => {
  let server: RunningServer;
  let completions: string;
  let chat: string;
  const ok = { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 };
  before(async () => {
    server = await startTestServer({ maxBodyBytes: MAX_BODY, maxN: 4 });
    completions = server.url + '/v1/completions';
    chat = server.url + '/v1/chat/completions';
  });
  after(async () => server.close());

  it('malformed JSON → 400', async () => {
    const e = await assertOpenAIError(await postJson(completions, '{"prompt": "Once", '), 400, null);
    assert.equal(e.type, 'invalid_request_error');
    assert.match(e.message, /JSON/);
  });

  it('a body that is not a JSON object → 400', async () => {
    await assertOpenAIError(await postJson(completions, '[1, 2]'), 400, null);
    await assertOpenAIError(await postJson(completions, ''), 400, null);
  });

  it('non-UTF-8 bytes → 400', async () => {
    const bytes = Buffer.concat([Buffer.from('{"prompt": "Once '), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('", "max_tokens": 4}')]);
    const e = await assertOpenAIError(await fetch(completions, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bytes }), 400, null);
    assert.match(e.message, /UTF-8/);
  });

  it('wrong types → 400 naming the field', async () => {
    await assertOpenAIError(await postJson(completions, { ...ok, max_tokens: 'ten' }), 400, 'max_tokens');
    await assertOpenAIError(await postJson(completions, { ...ok, temperature: '0.5' }), 400, 'temperature');
    await assertOpenAIError(await postJson(completions, { ...ok, prompt: { text: 'x' } }), 400, 'prompt');
    await assertOpenAIError(await postJson(completions, { ...ok, prompt: [1, 'a'] }), 400, 'prompt');
    await assertOpenAIError(await postJson(completions, { ...ok, stream: 'yes' }), 400, 'stream');
    await assertOpenAIError(await postJson(completions, { ...ok, max_tokens: 2.5 }), 400, 'max_tokens');
    await assertOpenAIError(await postJson(completions, { ...ok, stop: ['a', 'b', 'c', 'd', 'e'] }), 400, 'stop');
    await assertOpenAIError(await postJson(chat, { messages: 'hello' }), 400, 'messages');
    await assertOpenAIError(await postJson(chat, { messages: [{ role: 'wizard', content: 'x' }] }), 400, 'messages[0].role');
    await assertOpenAIError(await postJson(chat, { messages: [] }), 400, 'messages');
  });

  it('a missing prompt → 400', async () => {
    await assertOpenAIError(await postJson(completions, { max_tokens: 4 }), 400, 'prompt');
  });

  it('an unknown model → 404 model_not_found', async () => {
    const e = await assertOpenAIError(await postJson(completions, { ...ok, model: 'gpt-17' }), 404, 'model');
    assert.equal(e.code, 'model_not_found');
    await assertOpenAIError(await postJson(chat, { model: 'gpt-17', messages: [{ role: 'user', content: 'x' }] }), 404, 'model');
    await assertOpenAIError(await fetch(server.url + '/v1/models/gpt-17'), 404, 'model');
  });

  it('max_tokens ≤ 0 → 400', async () => {
    await assertOpenAIError(await postJson(completions, { ...ok, max_tokens: 0 }), 400, 'max_tokens');
    await assertOpenAIError(await postJson(completions, { ...ok, max_tokens: -5 }), 400, 'max_tokens');
    await assertOpenAIError(await postJson(chat, { messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 0 }), 400, 'max_completion_tokens');
  });

  it('max_tokens beyond the context → 400 naming both lengths', async () => {
    const e = await assertOpenAIError(await postJson(completions, { ...ok, max_tokens: 100_000 }), 400, 'max_tokens');
    assert.match(e.message, /512/);
    assert.match(e.message, /100000/);
    await assertOpenAIError(await postJson(chat, { messages: [{ role: 'user', content: 'x' }], max_tokens: 600 }), 400, 'max_tokens');
  });

  it('temperature < 0 or > 2 → 400', async () => {
    await assertOpenAIError(await postJson(completions, { ...ok, temperature: -0.1 }), 400, 'temperature');
    await assertOpenAIError(await postJson(completions, { ...ok, temperature: 2.5 }), 400, 'temperature');
  });

  it('top_p outside (0, 1] → 400', async () => {
    await assertOpenAIError(await postJson(completions, { ...ok, top_p: 0 }), 400, 'top_p');
    await assertOpenAIError(await postJson(completions, { ...ok, top_p: 1.01 }), 400, 'top_p');
  });

  it('other sampling fields out of range → 400', async () => {
    await assertOpenAIError(await postJson(completions, { ...ok, presence_penalty: 3 }), 400, 'presence_penalty');
    await assertOpenAIError(await postJson(completions, { ...ok, frequency_penalty: -3 }), 400, 'frequency_penalty');
    await assertOpenAIError(await postJson(completions, { ...ok, top_k: -2 }), 400, 'top_k');
    await assertOpenAIError(await postJson(completions, { ...ok, min_p: 1.5 }), 400, 'min_p');
    await assertOpenAIError(await postJson(completions, { ...ok, repetition_penalty: 0 }), 400, 'repetition_penalty');
    await assertOpenAIError(await postJson(completions, { ...ok, seed: 1.5 }), 400, 'seed');
  });

  it('n too large (or < 1) → 400', async () => {
    const e = await assertOpenAIError(await postJson(completions, { ...ok, n: 5 }), 400, 'n');
    assert.match(e.message, /4/);
    await assertOpenAIError(await postJson(completions, { ...ok, n: 0 }), 400, 'n');
  });

  it('logprobs out of range → 400', async () => {
    await assertOpenAIError(await postJson(completions, { ...ok, logprobs: 6 }), 400, 'logprobs');
    await assertOpenAIError(await postJson(completions, { ...ok, logprobs: -1 }), 400, 'logprobs');
    await assertOpenAIError(await postJson(chat, { messages: [{ role: 'user', content: 'x' }], logprobs: true, top_logprobs: 21 }), 400, 'top_logprobs');
    await assertOpenAIError(await postJson(chat, { messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }), 400, 'top_logprobs');
  });

  it('a prompt longer than the context → 400 naming both lengths', async () => {
    const e = await assertOpenAIError(await postJson(completions, { ...ok, prompt: Array(600).fill(100) }), 400, 'prompt');
    assert.match(e.message, /512/);
    assert.match(e.message, /600/);
    await assertOpenAIError(await postJson(completions, { ...ok, prompt: 'Once upon a time '.repeat(200) }), 400, 'prompt');
    await assertOpenAIError(await postJson(chat, { messages: [{ role: 'user', content: 'the cat sat '.repeat(300) }] }), 400, 'messages');
  });

  it('an empty prompt → 400', async () => {
    await assertOpenAIError(await postJson(completions, { ...ok, prompt: '' }), 400, 'prompt');
    await assertOpenAIError(await postJson(completions, { ...ok, prompt: [] }), 400, 'prompt');
    await assertOpenAIError(await postJson(completions, { ...ok, prompt: [[1, 2], []] }), 400, 'prompt[1]');
    await assertOpenAIError(await postJson(completions, { ...ok, prompt: ['a', ''] }), 400, 'prompt[1]');
  });

  it('invalid token ids → 400', async () => {
    const e = await assertOpenAIError(await postJson(completions, { ...ok, prompt: [1, 512] }), 400, 'prompt');
    assert.match(e.message, /512/);
    await assertOpenAIError(await postJson(completions, { ...ok, prompt: [1, -1] }), 400, 'prompt');
    await assertOpenAIError(await postJson(completions, { ...ok, prompt: [[1, 2], [3, 99999]] }), 400, 'prompt[1]');
  });

  it('a body over the size limit → 413', async () => {
    const big = JSON.stringify({ ...ok, prompt: 'a'.repeat(MAX_BODY) });
    const e = await assertOpenAIError(await postJson(completions, big), 413, null);
    assert.match(e.message, new RegExp(String(MAX_BODY)));
    // Chunked upload without Content-Length is counted as it streams in.
    const chunked = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(big));
        c.close();
      },
    });
    await assertOpenAIError(await fetch(completions, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chunked, duplex: 'half' } as RequestInit), 413, null);
  });

  it('unsupported features are refused, not ignored', async () => {
    await assertOpenAIError(await postJson(completions, { ...ok, suffix: 'The end.' }), 400, 'suffix');
    await assertOpenAIError(await postJson(completions, { ...ok, logit_bias: { '5': 100 } }), 400, 'logit_bias');
    // The bundled model's default template renders no tools.
    await assertOpenAIError(await postJson(chat, { messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f' } }] }), 400, 'tools');
    await assertOpenAIError(await postJson(chat, { messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function' }] }), 400, 'tools[0].function');
  });

  it('unknown routes → 404 in the same shape', async () => {
    await assertOpenAIError(await postJson(server.url + '/v1/embeddings', {}), 404);
  });

  it('after all of that, a normal request is answered correctly and failures were counted', async () => {
    const res = await postJson(completions, { ...ok, max_tokens: 16 });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { choices: { text: string }[] };
    assert.ok(body.choices[0]!.text.startsWith(', there was a little girl named Lily'), body.choices[0]!.text);
    const m = await scrape(server.url);
    assert.ok(m.get('mop_requests_total{model="stories260K",outcome="invalid"}')! >= 20);
    assert.ok(m.get('mop_requests_total{model="stories260K",outcome="too_large"}')! >= 1 || m.get('mop_requests_total{model="unknown",outcome="too_large"}')! >= 1);
    assert.equal(m.get('mop_requests_total{model="stories260K",outcome="success"}'), 1);
    assert.equal(m.get('mop_num_requests_running{model="stories260K"}'), 0);
  });
});
