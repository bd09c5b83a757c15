import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, okJson, postJson, scrape, startTestServer } from './helpers/server.ts';

const PROMPT = 'Once upon a time, there was a little dog.';
const MESSAGES = [
  { role: 'system', content: 'You tell short stories.' },
  { role: 'user', content: 'Tell me about a dog.' },
];

interface Tokenized {
  count: number;
  max_model_len: number;
  tokens: number[];
  token_strs?: string[];
}

/** mop_tokenize_requests_total for a route and outcome, summed over the model label. */
function tokenizeCount(m: Map<string, number>, route: string, outcome: string): number {
  let n = 0;
  for (const [k, v] of m) if (k.startsWith('mop_tokenize_requests_total{') && k.includes(`outcome="${outcome}"`) && k.includes(`route="${route}"`)) n += v;
  return n;
}

describe('POST /tokenize and /detokenize', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ maxBatch: 2 })));
  after(async () => s.close());

  const tokenize = (body: unknown) => okJson<Tokenized>(postJson(`${s.url}/tokenize`, body));

  it('tokenizes a prompt as /v1/completions counts it, BOS first, with the context length', async () => {
    const t = await tokenize({ model: 'stories260K', prompt: PROMPT });
    const done = await okJson<{ usage: { prompt_tokens: number } }>(postJson(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 1 }));
    assert.equal(t.count, done.usage.prompt_tokens);
    assert.equal(t.tokens.length, t.count);
    assert.equal(t.max_model_len, 512);
    assert.equal(t.token_strs, undefined);
    const bare = await tokenize({ prompt: PROMPT, add_special_tokens: false });
    assert.deepEqual(bare.tokens, t.tokens.slice(1));
  });

  it('returns each token’s text when asked, and detokenizes back to the prompt', async () => {
    const t = await tokenize({ prompt: PROMPT, add_special_tokens: false, return_token_strs: true });
    assert.equal(t.token_strs!.length, t.count);
    const back = await okJson<{ prompt: string }>(postJson(`${s.url}/detokenize`, { model: 'stories260K', tokens: t.tokens }));
    assert.deepEqual(back, { prompt: PROMPT });
    assert.deepEqual(await okJson(postJson(`${s.url}/detokenize`, { tokens: [] })), { prompt: '' });
  });

  it('tokenizes messages as /v1/chat/completions prefills them, and without the assistant cue when asked', async () => {
    const t = await tokenize({ messages: MESSAGES });
    const done = await okJson<{ usage: { prompt_tokens: number } }>(postJson(`${s.url}/v1/chat/completions`, { messages: MESSAGES, max_tokens: 1 }));
    assert.equal(t.count, done.usage.prompt_tokens);
    const noCue = await tokenize({ messages: MESSAGES, add_generation_prompt: false, add_special_tokens: false });
    assert.ok(noCue.count < t.count);
    assert.deepEqual(t.tokens.slice(0, noCue.count - 1), noCue.tokens.slice(0, -1));
  });

  it('answers bad input with OpenAI-shaped 400s naming the field, each counted by outcome in mop_tokenize_requests_total', async () => {
    const before = await scrape(s.url);
    const bad = async (path: string, body: unknown, param: string) => assertOpenAIError(await postJson(`${s.url}${path}`, body), 400, param);
    await bad('/tokenize', {}, 'prompt');
    await bad('/tokenize', { prompt: PROMPT, messages: MESSAGES }, 'messages');
    await bad('/tokenize', { prompt: 42 }, 'prompt');
    await bad('/tokenize', { prompt: PROMPT, add_special_tokens: 'yes' }, 'add_special_tokens');
    await bad('/tokenize', { prompt: PROMPT, return_token_strs: 1 }, 'return_token_strs');
    await bad('/tokenize', { prompt: PROMPT, add_generation_prompt: true }, 'add_generation_prompt');
    await bad('/tokenize', { messages: [] }, 'messages');
    await bad('/tokenize', { messages: [{ role: 'wizard', content: 'hi' }] }, 'messages[0].role');
    await bad('/tokenize', { messages: MESSAGES, add_generation_prompt: 'no' }, 'add_generation_prompt');
    await bad('/tokenize', { messages: MESSAGES, continue_final_message: true }, 'continue_final_message');
    await bad('/detokenize', { tokens: 'abc' }, 'tokens');
    await bad('/detokenize', { tokens: [1, 2.5] }, 'tokens[1]');
    await bad('/detokenize', { tokens: [1, 1_000_000] }, 'tokens');
    await bad('/detokenize', {}, 'tokens');
    await assertOpenAIError(await postJson(`${s.url}/tokenize`, '{"prompt": '), 400);
    await assertOpenAIError(await postJson(`${s.url}/tokenize`, { model: 'nope', prompt: PROMPT }), 404);
    const m = await scrape(s.url);
    const added = (route: string, outcome: string) => tokenizeCount(m, route, outcome) - tokenizeCount(before, route, outcome);
    assert.deepEqual([added('tokenize', 'invalid'), added('detokenize', 'invalid'), added('tokenize', 'not_found'), added('tokenize', 'success')], [11, 4, 1, 0]);
  });
});

describe('/tokenize and /detokenize follow the /v1 rules on keys, content type, body size and CORS', () => {
  const KEY = 'tokenize-test-key-0123456789';
  let s: RunningServer;
  before(async () => (s = await startTestServer({ maxBatch: 1, apiKeys: [KEY], allowedOrigins: ['https://app.example.com'], maxBodyBytes: 1024 })));
  after(async () => s.close());
  const auth = { authorization: `Bearer ${KEY}` };

  for (const path of ['/tokenize', '/detokenize']) {
    it(`${path}: 401 without a key, 415 for a body not declared JSON, 413 past the body limit, CORS for named origins`, async () => {
      const body = path === '/tokenize' ? { prompt: PROMPT } : { tokens: [1, 2] };
      assert.equal((await okJson(postJson(`${s.url}${path}`, body, { headers: { 'content-type': 'application/json', ...auth } }))) !== undefined, true);
      await assertOpenAIError(await postJson(`${s.url}${path}`, body), 401);
      await assertOpenAIError(await fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'text/plain', ...auth }, body: JSON.stringify(body) }), 415);
      const big = path === '/tokenize' ? { prompt: 'a'.repeat(2000) } : { tokens: new Array(1000).fill(1) };
      await assertOpenAIError(await postJson(`${s.url}${path}`, big, { headers: { 'content-type': 'application/json', ...auth } }), 413);
      const preflight = await fetch(`${s.url}${path}`, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
      assert.ok(preflight.status < 300);
      assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example.com');
      const other = await fetch(`${s.url}${path}`, { method: 'OPTIONS', headers: { origin: 'https://evil.example.com', 'access-control-request-method': 'POST' } });
      assert.equal(other.headers.get('access-control-allow-origin'), null);
      // Every one of them is counted where Prometheus looks, apart from generations.
      const route = path.slice(1);
      const m = await scrape(s.url);
      const count = (outcome: string) => tokenizeCount(m, route, outcome);
      assert.deepEqual(['success', 'unauthorized', 'invalid', 'too_large', 'error'].map(count), [1, 1, 1, 1, 0]);
      // A success under the variant it ran on (the active one: no model named), refusals before the body under 'unknown'.
      const id = ((await okJson<{ data: { id: string }[] }>(fetch(`${s.url}/v1/models`, { headers: auth }))).data[0]!).id;
      assert.equal(m.get(`mop_tokenize_requests_total{model="${id}",outcome="success",route="${route}"}`), 1);
      assert.equal(m.get(`mop_tokenize_requests_total{model="unknown",outcome="unauthorized",route="${route}"}`), 1);
      assert.equal([...m.keys()].filter((k) => k.startsWith('mop_requests_total') && m.get(k)! > 0).length, 0, 'not counted as generation requests');
    });
  }
});
