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

  const finished = async (body: object) => {
    const res = await admin(s, 'POST', '/admin/prune', body);
    assert.equal(res.status, 202, await res.clone().text());
    const job = (await res.json()) as { id: string };
    let view: { status: string; error: string | null; report?: { recovery?: { data?: { sources: string[]; textTokens: number; windows: number } } } } = { status: 'running', error: null };
    await waitFor(async () => {
      view = (await (await admin(s, 'GET', `/admin/prune/${job.id}`)).json()) as typeof view;
      return view.status !== 'running';
    }, 120_000, 'the prune job to finish');
    assert.equal(view.status, 'succeeded', view.error ?? '');
    return view.report!.recovery!.data!;
  };

  it('adds recovery_self_tokens of sampled text to the bundled recovery files (as the default recipe does), none with 0, and fewer tokens than a batch when the files hold one', async () => {
    const quick = { target: 0.2, strategy: 'width', samples: 8, seq_len: 64, recovery_steps: 0, final_recovery_steps: 2, recovery_batch: 2, recovery_seq_len: 32, activate: false };
    const mixed = await finished({ ...quick, id: 'mixed-20', recovery_self_tokens: 2048 });
    const plain = await finished({ ...quick, id: 'plain-20', recovery_self_tokens: 0 });
    assert.deepEqual(plain.sources, ['bundled:data/tinystories-recovery-start.txt', 'bundled:data/tinystories-recovery.txt']);
    assert.deepEqual(mixed.sources.slice(0, 2), plain.sources);
    assert.match(mixed.sources[2]!, /^self: 2048 tokens sampled from the model \(seed 0, temperature 1/);
    assert.equal(mixed.sources.length, 3);
    assert.equal(mixed.textTokens, plain.textTokens + 2048);
    // 2048 sampled tokens cut into windows of 32 (each after a BOS): 64 more windows.
    assert.equal(mixed.windows, plain.windows + 2048 / 32);
    // 1024 sampled tokens are not a batch of 64 × 32 on their own; with the files they need not be.
    const few = await finished({ ...quick, id: 'few-20', recovery_self_tokens: 1024, recovery_batch: 64, final_recovery_steps: 1 });
    assert.equal(few.windows, plain.windows + 1024 / 32);
  });

  it('refuses recovery_data "self" with fewer than 1024 tokens to sample, in one line naming both options', async () => {
    const res = await admin(s, 'POST', '/admin/prune', { target: 0.2, recovery_data: 'self', recovery_self_tokens: 0 });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { message: string } };
    assert.match(body.error.message, /^recovery-data self samples recovery-self-tokens tokens from the model: give at least 1024, got 0$/);
  });
});
