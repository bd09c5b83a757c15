import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, startTestServer } from './helpers/server.ts';

const TOKEN = 'test-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };

function admin(s: RunningServer, method: string, p: string, body?: unknown): Promise<Response> {
  return fetch(s.url + p, { method, headers: { 'content-type': 'application/json', ...auth }, ...(body !== undefined && { body: JSON.stringify(body) }) });
}

describe('POST /admin/prune with uniform', () => {
  let s: RunningServer;
  before(async () => {
    s = await startTestServer({ adminToken: TOKEN });
  });
  after(async () => {
    await s.close();
  });

  it('uniform: true prunes every kept layer to the same shape and serves it; a non-boolean is a 400 naming the field', async () => {
    const bad = await assertOpenAIError(await admin(s, 'POST', '/admin/prune', { target: 0.3, uniform: 'yes' }), 400, 'uniform');
    assert.match(bad.message, /uniform: expected true or false, got "yes"/);

    const started = await admin(s, 'POST', '/admin/prune', { target: 0.3, uniform: true, samples: 8, seq_len: 64, recovery: 'none', id: 'uniform-30', activate: false });
    assert.equal(started.status, 202, await started.clone().text());
    const { id } = (await started.json()) as { id: string };
    let job = { status: 'running', error: null as unknown };
    for (const end = Date.now() + 120_000; job.status === 'running' && Date.now() < end; ) {
      await new Promise((r) => setTimeout(r, 50));
      job = (await (await admin(s, 'GET', `/admin/prune/${id}`)).json()) as typeof job;
    }
    assert.equal(job.status, 'succeeded', JSON.stringify(job));
    const models = (await (await admin(s, 'GET', '/admin/models')).json()) as { data: { id: string; layers: unknown[] }[] };
    const layers = models.data.find((m) => m.id === 'uniform-30')!.layers;
    assert.ok(layers.length >= 2 && layers.every((l) => JSON.stringify(l) === JSON.stringify(layers[0])), JSON.stringify(layers));
    const r = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'uniform-30', prompt: 'Once upon a time', max_tokens: 4 }) });
    assert.equal(r.status, 200);
  });
});
