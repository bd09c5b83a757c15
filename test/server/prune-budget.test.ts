import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { startTestServer } from './helpers/server.ts';

const TOKEN = 'test-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };

function admin(s: RunningServer, method: string, p: string, body?: unknown): Promise<Response> {
  return fetch(s.url + p, { method, headers: { 'content-type': 'application/json', ...auth }, ...(body !== undefined && { body: JSON.stringify(body) }) });
}

describe('POST /admin/prune with a latency budget and a width multiple', () => {
  let s: RunningServer;
  before(async () => {
    s = await startTestServer({ adminToken: TOKEN });
  });
  after(async () => {
    await s.close();
  });

  it('measures the engine profile in the prune worker, prunes by step time with aligned MLP widths, and serves the result', async () => {
    const body = { target: 0.3, strategy: 'width', budget: 'latency', width_multiple: 4, samples: 8, seq_len: 64, recovery: 'none', id: 'fast-30', activate: false };
    const started = await admin(s, 'POST', '/admin/prune', body);
    assert.equal(started.status, 202, await started.clone().text());
    const { id } = (await started.json()) as { id: string };
    type Job = { status: string; error: unknown; progress: { message: string } | null };
    let job: Job = { status: 'running', error: null, progress: null };
    const messages = new Set<string>();
    const end = Date.now() + 120_000;
    while (job.status === 'running' && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      job = (await (await admin(s, 'GET', `/admin/prune/${id}`)).json()) as Job;
      if (job.progress?.message) messages.add(job.progress.message);
    }
    assert.equal(job.status, 'succeeded', JSON.stringify(job));
    assert.ok([...messages].some((m) => /decode-step profile/.test(m)), [...messages].join(' | '));
    const models = (await (await admin(s, 'GET', '/admin/models')).json()) as { data: { id: string; layers: { ffn: number }[]; compression_ratio: number }[] };
    const v = models.data.find((m) => m.id === 'fast-30')!;
    assert.ok(v, 'the variant is registered');
    const base = models.data.find((m) => m.id === 'stories260K')!;
    v.layers.forEach((l, i) => {
      if (l.ffn < base.layers[i]!.ffn) assert.equal(l.ffn % 4, 0, `layer ${i}: ${l.ffn} neurons`);
    });
    const r = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'fast-30', prompt: 'Once upon a time', max_tokens: 4 }) });
    assert.equal(r.status, 200);
  });
});
