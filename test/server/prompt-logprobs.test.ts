import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { referenceForward } from '../helpers/reference-forward.ts';
import { assertOpenAIError, postJson, startTestServer } from './helpers/server.ts';

const PROMPT = 'Once upon a time, there was a little girl named Lily. She liked to play';

/** log p(token t | tokens < t) and the argmax at each position, from the float64 reference forward pass. */
function referenceScores(model: LoadedModel, tokens: number[]): { logprobs: (number | null)[]; argmax: (number | null)[] } {
  const V = model.spec.vocabSize;
  const logits = referenceForward(model.spec, model.weights, tokens);
  const logprobs: (number | null)[] = [null];
  const argmax: (number | null)[] = [null];
  for (let t = 1; t < tokens.length; t++) {
    const row = logits.subarray((t - 1) * V, t * V);
    const max = Math.max(...row);
    const logZ = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    logprobs.push(row[tokens[t]!]! - logZ);
    argmax.push(row.indexOf(max));
  }
  return { logprobs, argmax };
}

describe('prompt log-probabilities (echo + logprobs), as evaluation harnesses ask for them', () => {
  let server: RunningServer;
  let client: OpenAI;
  let model: LoadedModel;
  before(async () => {
    server = await startTestServer();
    client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'x', maxRetries: 0 });
    model = await loadModel(defaultModelPath());
  });
  after(async () => server.close());

  it('max_tokens 0 with echo returns the prompt and its log-probabilities, equal to the reference forward pass, and generates nothing', async () => {
    const r = await client.completions.create({ model: 'stories260K', prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 2, temperature: 0 });
    const c = r.choices[0]!;
    assert.equal(c.text, PROMPT);
    assert.equal(c.finish_reason, 'length');
    assert.equal(r.usage!.completion_tokens, 0);
    const tokens = server.service.active!.tokenizer.encode(PROMPT, { addBos: true });
    assert.equal(r.usage!.prompt_tokens, tokens.length);
    const lp = c.logprobs!;
    assert.equal(lp.tokens!.length, tokens.length);
    const ref = referenceScores(model, tokens);
    assert.equal(lp.token_logprobs![0], null, 'the first token has no context');
    assert.equal(lp.top_logprobs![0], null);
    const tokenizer = server.service.active!.tokenizer;
    for (let t = 1; t < tokens.length; t++) {
      const got = lp.token_logprobs![t]!;
      assert.ok(Math.abs(got - ref.logprobs[t]!) < 1e-4, `token ${t}: ${got} vs reference ${ref.logprobs[t]}`);
      const top = lp.top_logprobs![t]!;
      // The 2 most likely tokens plus the prompt's own token (when it is not among them).
      assert.ok(Object.keys(top).length >= 2 && Object.keys(top).length <= 3, JSON.stringify(top));
      assert.equal(top[tokenizer.tokenText(tokens[t]!)], got);
      const best = Object.entries(top).reduce((a, b) => (b[1] > a[1] ? b : a));
      assert.equal(best[0], tokenizer.tokenText(ref.argmax[t]!), `most likely token at ${t}`);
    }
    assert.ok(lp.token_logprobs!.slice(1).every((x) => x! < 0));
  });

  it('echo with generation: the same prompt log-probabilities, then the generated tokens', async () => {
    const scored = await client.completions.create({ model: 'stories260K', prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 1 });
    const r = await client.completions.create({ model: 'stories260K', prompt: PROMPT, max_tokens: 5, echo: true, logprobs: 1, temperature: 0 });
    const n = scored.choices[0]!.logprobs!.tokens!.length;
    const lp = r.choices[0]!.logprobs!;
    assert.equal(lp.tokens!.length, n + 5);
    assert.deepEqual(lp.token_logprobs!.slice(0, n), scored.choices[0]!.logprobs!.token_logprobs);
    assert.ok(r.choices[0]!.text.startsWith(PROMPT) && r.choices[0]!.text.length > PROMPT.length);
  });

  it('several prompts, streamed: one chunk per prompt with its log-probabilities, then usage', async () => {
    const stream = await client.completions.create({ model: 'stories260K', prompt: [PROMPT, 'The cat sat'], max_tokens: 0, echo: true, logprobs: 0, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const ch of stream) chunks.push(ch);
    assert.equal(chunks.length, 3);
    assert.deepEqual(chunks.slice(0, 2).map((ch) => [ch.choices[0]!.index, ch.choices[0]!.text, ch.choices[0]!.finish_reason]), [[0, PROMPT, 'length'], [1, 'The cat sat', 'length']]);
    const second = chunks[1]!.choices[0]!.logprobs!;
    assert.equal(second.token_logprobs![0], null);
    assert.ok(second.token_logprobs!.slice(1).every((x) => typeof x === 'number' && x < 0));
    assert.equal(chunks[2]!.usage!.completion_tokens, 0);
  });

  it('max_tokens 0 without echo is a 400 (there would be nothing to return); the server keeps serving', async () => {
    const err = await assertOpenAIError(await postJson(`${server.url}/v1/completions`, { prompt: PROMPT, max_tokens: 0 }), 400);
    assert.equal(err.param, 'max_tokens');
    assert.match(err.message, /echo/);
    await assertOpenAIError(await postJson(`${server.url}/v1/completions`, { prompt: PROMPT, max_tokens: -1, echo: true }), 400);
    const chat = await assertOpenAIError(await postJson(`${server.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 0 }), 400);
    assert.equal(chat.param, 'max_tokens');
    const ok = await postJson(`${server.url}/v1/completions`, { prompt: PROMPT, max_tokens: 2 });
    assert.equal(ok.status, 200);
  });

  it('a token-id prompt longer than the context is a 400 with echo and max_tokens 0 too, not echoed back whole', async () => {
    const context = server.service.active!.maxContext;
    const ids = Array.from({ length: context + 100 }, (_, i) => 3 + (i % 60));
    for (const stream of [false, true]) {
      const err = await assertOpenAIError(await postJson(`${server.url}/v1/completions`, { prompt: ids, max_tokens: 0, echo: true, stream }), 400, 'prompt');
      assert.equal(err.code, 'context_length_exceeded');
      assert.match(err.message, new RegExp(`the prompt has ${context + 100} tokens`));
    }
    const fits = await postJson(`${server.url}/v1/completions`, { prompt: ids.slice(0, context), max_tokens: 0, echo: true });
    assert.equal(fits.status, 200);
  });

  it('more prompts than the server can hold is a 400 before any prompt is decoded or encoded (an out-of-vocabulary id in them is never reached)', async () => {
    const lists = Array.from({ length: 65 }, () => [1, 10_000_000]);
    const err = await assertOpenAIError(await postJson(`${server.url}/v1/completions`, { prompt: lists, max_tokens: 0, echo: true }), 400, 'prompt');
    assert.match(err.message, /65 prompts × n=1 is more generations than this server can hold at once \(64\)/);
  });
});
