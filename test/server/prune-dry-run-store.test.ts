import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { adminRequest, startTestServer, waitFor } from './helpers/server.ts';

const TOKEN = 'test-admin-token';
const admin = (s: RunningServer, method: string, p: string, body?: unknown) => adminRequest(s, TOKEN, method, p, body);
// Small calibration and recovery, 2048 tokens sampled from the model: a prune of seconds.
const quick = { samples: 8, seq_len: 64, recovery_steps: 0, final_recovery_steps: 2, recovery_batch: 2, recovery_seq_len: 32, recovery_self_tokens: 2048 };

type Estimate = { seconds: { total: number; sampling: number }; sampleCached?: boolean; measured: { sampleTokenSeconds?: number } };

describe('POST /admin/prune dry_run with a model store', () => {
  let s: RunningServer;
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-dry-run-store-'));
    s = await startTestServer({ adminToken: TOKEN, modelStore: dir });
  });
  after(async () => {
    await s.close();
    await fs.rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  it('counts no sampling once a prune of the model has sampled the recipe’s recovery text (a re-prune at a new ratio), and counts it for other text', async () => {
    const before = (await (await admin(s, 'POST', '/admin/prune', { ...quick, target: 0.3, dry_run: true })).json()) as Estimate;
    assert.ok(before.seconds.sampling > 0 && before.sampleCached === undefined, JSON.stringify(before.seconds));
    const started = await admin(s, 'POST', '/admin/prune', { ...quick, target: 0.2, strategy: 'width', activate: false });
    assert.equal(started.status, 202, await started.clone().text());
    const { id } = (await started.json()) as { id: string };
    let status = 'running';
    await waitFor(async () => (status = ((await (await admin(s, 'GET', `/admin/prune/${id}`)).json()) as { status: string }).status) !== 'running', 120_000, 'the prune');
    assert.equal(status, 'succeeded');
    const res = await admin(s, 'POST', '/admin/prune', { ...quick, target: 0.3, dry_run: true });
    assert.equal(res.status, 200);
    const after = (await res.json()) as Estimate;
    assert.equal(after.sampleCached, true);
    assert.equal(after.seconds.sampling, 0);
    const other = (await (await admin(s, 'POST', '/admin/prune', { ...quick, recovery_self_tokens: 4096, target: 0.3, dry_run: true })).json()) as Estimate;
    assert.ok(other.seconds.sampling > 0 && other.sampleCached === undefined);
    // A dry run reads no file a request names, so with one (here the bundled text by name) the sampling is counted.
    const named = (await (await admin(s, 'POST', '/admin/prune', { ...quick, calibration: 'tinystories-calibration.txt', target: 0.3, dry_run: true })).json()) as Estimate;
    assert.ok(named.seconds.sampling > 0 && named.sampleCached === undefined, JSON.stringify(named).slice(0, 300));
  });
});
