import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { adminRequest, startTestServer, waitFor } from './helpers/server.ts';

const TOKEN = 'test-admin-token';

const admin = (s: RunningServer, method: string, p: string, body?: unknown) => adminRequest(s, TOKEN, method, p, body);

describe('POST /admin/prune with recovery_data "self"', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ adminToken: TOKEN })));
  after(() => s.close());

  it('recovers on text sampled from the model being pruned (no file named, none read from the data directory)', async () => {
    const body = { target: 0.2, strategy: 'width', samples: 8, seq_len: 64, recovery_data: 'self', recovery_self_tokens: 2048, recovery_steps: 0, final_recovery_steps: 4, recovery_batch: 2, recovery_seq_len: 32 };
    const res = await admin(s, 'POST', '/admin/prune', body);
    assert.equal(res.status, 202, await res.clone().text());
    const job = (await res.json()) as { id: string };
    let view: { status: string; error: string | null; report?: { recovery?: { data?: { sources: string[]; textTokens: number } } } } = { status: 'running', error: null };
    await waitFor(async () => {
      view = (await (await admin(s, 'GET', `/admin/prune/${job.id}`)).json()) as typeof view;
      return view.status !== 'running';
    }, 120_000, 'the prune job to finish');
    assert.equal(view.status, 'succeeded', view.error ?? '');
    const data = view.report!.recovery!.data!;
    assert.match(data.sources[0]!, /^self: 2048 tokens sampled from the model \(seed 0, temperature 1\)/);
    assert.equal(data.textTokens, 2048);
  });
});
