/**
 * --admin-port: /admin/* and the /admin/events WebSocket are served on a listener of their own
 * (same host), and the API port answers 404 for every spelling of /admin; the admin port serves
 * nothing else. Without it, both stay on the one port.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, postJson, startTestServer } from './helpers/server.ts';

const TOKEN = 'admin-port-test-token';
const auth = { authorization: `Bearer ${TOKEN}` };

/** Status of a WebSocket upgrade to /admin/events at `base`: 101 when it opened, else the refusal's status. */
function upgradeStatus(base: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base.replace('http', 'ws') + '/admin/events', { headers: auth });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

describe('with --admin-port', () => {
  let s: RunningServer;
  const lines: string[] = [];
  before(async () => {
    s = await startTestServer({ adminToken: TOKEN, adminPort: 0 }, { log: (l) => lines.push(l) });
  });
  after(async () => s?.close());

  it('serves /admin on its own port, and says where in the log', async () => {
    assert.notEqual(s.adminUrl, s.url);
    const res = await fetch(s.adminUrl + '/admin/models', { headers: auth });
    assert.equal(res.status, 200, await res.clone().text());
    const adminPort = new URL(s.adminUrl).port;
    assert.ok(lines.some((l) => l.startsWith('admin API: on') && l.includes(`:${adminPort} only`)), lines.join('\n'));
  });

  it('answers 404 for /admin on the API port, however the path is spelled', async () => {
    for (const path of ['/admin/models', '/admin', '/admin/', '//admin/models', '/%61dmin/models', '/ADMIN/models', '/admin/../admin/models']) {
      const err = await assertOpenAIError(await fetch(s.url + path, { headers: auth }), 404);
      assert.equal(err.code, 'not_found', path);
    }
    await assertOpenAIError(await postJson(s.url + '/admin/prune', { target: 0.2 }, { headers: { ...auth, 'content-type': 'application/json' } }), 404);
  });

  it('accepts the /admin/events WebSocket only on the admin port', async () => {
    assert.equal(await upgradeStatus(s.adminUrl), 101);
    assert.equal(await upgradeStatus(s.url), 404);
  });

  it('serves the API, health and metrics on the API port only', async () => {
    assert.equal((await fetch(s.url + '/v1/models')).status, 200);
    assert.equal((await fetch(s.url + '/health')).status, 200);
    for (const path of ['/v1/models', '/health', '/metrics', '/ready']) await assertOpenAIError(await fetch(s.adminUrl + path), 404);
    const completion = await postJson(s.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 2 });
    assert.equal(completion.status, 200);
    await assertOpenAIError(await postJson(s.adminUrl + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 2 }), 404);
  });
});

describe('without --admin-port', () => {
  let s: RunningServer;
  before(async () => {
    s = await startTestServer({ adminToken: TOKEN });
  });
  after(async () => s?.close());

  it('serves /admin and its WebSocket on the API port', async () => {
    assert.equal(s.adminUrl, s.url);
    assert.equal((await fetch(s.url + '/admin/models', { headers: auth })).status, 200);
    assert.equal(await upgradeStatus(s.url), 101);
  });
});
