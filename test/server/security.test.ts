/**
 * The HTTP security surface: bodies must be declared JSON (415), --api-key on /v1 (401 as vLLM),
 * CORS only for --allowed-origins, the admin body limit (413) and admin changes refused while draining.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, postJson, scrape, startTestServer } from './helpers/server.ts';

const ADMIN_TOKEN = 'security-test-admin-token';
const KEY_1 = 'sk-first-key-0123456789';
const KEY_2 = 'sk-second-key-abcdefghij';
const ORIGIN = 'https://app.example.com';
const completionBody = JSON.stringify({ prompt: 'Once upon a time', max_tokens: 2, temperature: 0 });
const chatBody = JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, temperature: 0 });

/** A POST whose body is sent with exactly these headers (fetch adds no content type to bytes). */
function post(url: string, body: string, headers: Record<string, string>, method = 'POST'): Promise<Response> {
  return fetch(url, { method, headers, body: new TextEncoder().encode(body) });
}

async function assertUnsupportedMediaType(res: Response): Promise<void> {
  const e = await assertOpenAIError(res, 415, null);
  assert.equal(e.type, 'invalid_request_error');
  assert.equal(e.code, 'unsupported_media_type');
  assert.match(e.message, /content-type: application\/json/);
}

describe('a server with no security options', () => {
  let s: RunningServer;
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  before(async () => (s = await startTestServer({ adminToken: ADMIN_TOKEN })));
  after(async () => s.close());

  it('refuses generation bodies not declared as JSON with 415, before generating anything', async () => {
    const before = await scrape(s.url);
    const successes = () => [...before.keys()].filter((k) => k.startsWith('mop_requests_total') && k.includes('outcome="success"'));
    for (const [path, body] of [['/v1/completions', completionBody], ['/v1/chat/completions', chatBody]] as const) {
      await assertUnsupportedMediaType(await post(s.url + path, body, { 'content-type': 'text/plain' }));
      await assertUnsupportedMediaType(await post(s.url + path, body, {}));
      await assertUnsupportedMediaType(await post(s.url + path, body, { 'content-type': 'application/x-www-form-urlencoded' }));
      await assertUnsupportedMediaType(await post(s.url + path, body, { 'content-type': 'multipart/form-data; boundary=x' }));
      await assertUnsupportedMediaType(await post(s.url + path, body, { 'content-type': 'application/jsonx' }));
    }
    // What a web page can send cross-site without a preflight: fetch's default for a string body.
    await assertUnsupportedMediaType(await fetch(s.url + '/v1/completions', { method: 'POST', body: completionBody }));
    const after = await scrape(s.url);
    for (const k of successes()) assert.equal(after.get(k), before.get(k), `${k} did not move`);
    assert.equal((after.get('mop_requests_total{model="unknown",outcome="invalid"}') ?? 0) - (before.get('mop_requests_total{model="unknown",outcome="invalid"}') ?? 0), 11);
  });

  it('accepts application/json with parameters and in any case', async () => {
    for (const ct of ['application/json', 'application/json; charset=utf-8', 'Application/JSON', ' application/json ;charset=UTF-8']) {
      const res = await post(s.url + '/v1/completions', completionBody, { 'content-type': ct });
      assert.equal(res.status, 200, `${ct}: ${await res.text()}`);
    }
  });

  it('refuses admin bodies not declared as JSON with 415; bodyless admin requests still pass', async () => {
    await assertUnsupportedMediaType(await post(s.url + '/admin/prune', JSON.stringify({ target: 0.2 }), { ...admin, 'content-type': 'text/plain' }));
    await assertUnsupportedMediaType(await post(s.url + '/admin/prune', JSON.stringify({ target: 0.2 }), admin));
    await assertUnsupportedMediaType(await post(s.url + '/admin/split', JSON.stringify({ variant: 'x', share: 0.1 }), { ...admin, 'content-type': 'text/plain' }, 'PUT'));
    // No body, no content type: the route answers (here: no such model).
    const e = await assertOpenAIError(await fetch(s.url + '/admin/models/nope/activate', { method: 'POST', headers: admin }), 404);
    assert.equal(e.code, 'model_not_found');
    // The token is checked before the content type: strangers learn nothing.
    await assertOpenAIError(await post(s.url + '/admin/prune', '{}', { 'content-type': 'text/plain' }), 401);
  });

  it('caps admin bodies at 64 KiB with 413 in OpenAI shape, declared or chunked', async () => {
    const big = JSON.stringify({ target: 0.2, padding: 'x'.repeat(70 * 1024) });
    const e = await assertOpenAIError(await postJson(s.url + '/admin/prune', big, { headers: { ...admin, 'content-type': 'application/json' } }), 413, null);
    assert.equal(e.code, 'request_too_large');
    assert.match(e.message, /65536/);
    const chunked = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(big));
        c.close();
      },
    });
    const res = await fetch(s.url + '/admin/prune', { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: chunked, duplex: 'half' } as RequestInit);
    await assertOpenAIError(res, 413, null);
  });

  it('sends no CORS headers: no preflight is granted, no response is readable cross-origin', async () => {
    const preflight = await fetch(s.url + '/v1/completions', {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.equal(preflight.headers.get('access-control-allow-origin'), null);
    assert.equal(preflight.headers.get('access-control-allow-headers'), null);
    for (const res of [
      await fetch(s.url + '/v1/models', { headers: { origin: ORIGIN } }),
      await postJson(s.url + '/v1/completions', completionBody, { headers: { origin: ORIGIN, 'content-type': 'application/json' } }),
      await fetch(s.url + '/health', { headers: { origin: ORIGIN } }),
    ]) {
      assert.equal(res.headers.get('access-control-allow-origin'), null, res.url);
      await res.arrayBuffer();
    }
  });

  it('refuses admin changes with 503 draining while shutting down; admin reads still answer', async () => {
    s.state.draining = true;
    try {
      for (const [method, path, body] of [
        ['POST', '/admin/prune', { target: 0.2 }],
        ['DELETE', '/admin/models/x', undefined],
        ['PUT', '/admin/split', { variant: 'x', share: 0.5 }],
        ['DELETE', '/admin/split', undefined],
        ['POST', '/admin/models/stories260K/activate', undefined],
      ] as const) {
        const res = await fetch(s.url + path, { method, headers: { ...admin, 'content-type': 'application/json' }, ...(body && { body: JSON.stringify(body) }) });
        const e = await assertOpenAIError(res, 503);
        assert.equal(e.code, 'draining', `${method} ${path}`);
      }
      for (const path of ['/admin/models', '/admin/prune', '/admin/split']) {
        const res = await fetch(s.url + path, { headers: admin });
        assert.equal(res.status, 200, `${path}: ${await res.text()}`);
      }
    } finally {
      s.state.draining = false;
    }
  });
});

describe('a server with --api-key and --allowed-origins', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ apiKeys: [KEY_1, KEY_2], allowedOrigins: [ORIGIN] })));
  after(async () => s.close());

  const client = (apiKey: string) => new OpenAI({ baseURL: s.url + '/v1', apiKey, maxRetries: 0 });

  it('serves the official client with any configured key', async () => {
    for (const key of [KEY_1, KEY_2]) {
      const r = await client(key).completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 2, temperature: 0 });
      assert.equal(r.choices.length, 1);
      assert.equal((await client(key).models.list()).data.length, 1);
    }
  });

  it('a wrong key raises the client\'s AuthenticationError', async () => {
    for (const key of ['sk-wrong-key-0123456789', KEY_1.slice(0, -1), KEY_1 + 'x', 'short']) {
      await assert.rejects(client(key).completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 2 }), (e: unknown) => {
        assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
        assert.equal(e.status, 401);
        assert.equal(e.code, 'invalid_api_key');
        return true;
      });
    }
    await assert.rejects(client('sk-wrong-key-0123456789').models.list(), OpenAI.AuthenticationError);
  });

  it('answers 401 in OpenAI shape with www-authenticate: Bearer to a request without a key, before reading its body; each is counted (outcome unauthorized)', async () => {
    const refused = async () => (await scrape(s.url)).get('mop_requests_total{model="unknown",outcome="unauthorized"}') ?? 0;
    const before = await refused();
    for (const res of [
      await fetch(s.url + '/v1/models'),
      await fetch(s.url + '/v1/models/stories260K', { headers: { authorization: `Basic ${KEY_1}` } }),
      await postJson(s.url + '/v1/completions', completionBody),
      await post(s.url + '/v1/chat/completions', chatBody, { 'content-type': 'text/plain' }),
    ]) {
      assert.equal(res.headers.get('www-authenticate'), 'Bearer');
      const e = await assertOpenAIError(res, 401, null);
      assert.equal(e.type, 'authentication_error');
      assert.equal(e.code, 'invalid_api_key');
    }
    assert.equal((await refused()) - before, 4, 'key guessing shows in /metrics');
  });

  it('leaves /health, /ready and /metrics open', async () => {
    for (const path of ['/health', '/ready', '/metrics']) {
      const res = await fetch(s.url + path);
      assert.equal(res.status, 200, path);
      await res.arrayBuffer();
    }
  });

  it('answers the preflight of an allowed origin, allowing authorization and content-type', async () => {
    const res = await fetch(s.url + '/v1/chat/completions', {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
    const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(',').map((h) => h.trim());
    assert.ok(allowed.includes('authorization') && allowed.includes('content-type'), allowed.join(','));
    assert.match(res.headers.get('access-control-allow-methods') ?? '', /POST/);
  });

  it('grants nothing to other origins', async () => {
    const preflight = await fetch(s.url + '/v1/chat/completions', {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    assert.equal(preflight.headers.get('access-control-allow-origin'), null);
    const res = await fetch(s.url + '/v1/models', { headers: { origin: 'https://evil.example', authorization: `Bearer ${KEY_1}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    await res.arrayBuffer();
  });

  it('lets the allowed origin read answers and errors', async () => {
    const ok = await postJson(s.url + '/v1/completions', completionBody, { headers: { origin: ORIGIN, authorization: `Bearer ${KEY_1}`, 'content-type': 'application/json' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('access-control-allow-origin'), ORIGIN);
    await ok.arrayBuffer();
    const refused = await fetch(s.url + '/v1/models', { headers: { origin: ORIGIN } });
    assert.equal(refused.headers.get('access-control-allow-origin'), ORIGIN);
    await assertOpenAIError(refused, 401);
    const bad = await postJson(s.url + '/v1/completions', { prompt: 'x', top_p: 7 }, { headers: { origin: ORIGIN, authorization: `Bearer ${KEY_1}`, 'content-type': 'application/json' } });
    assert.equal(bad.headers.get('access-control-allow-origin'), ORIGIN);
    await assertOpenAIError(bad, 400, 'top_p');
  });
});

describe("a server with --allowed-origins '*'", () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ allowedOrigins: ['*'] })));
  after(async () => s.close());

  it('answers any origin with *', async () => {
    const preflight = await fetch(s.url + '/v1/completions', {
      method: 'OPTIONS',
      headers: { origin: 'https://anywhere.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), '*');
    const res = await fetch(s.url + '/v1/models', { headers: { origin: 'https://anywhere.example' } });
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    await res.arrayBuffer();
  });
});
