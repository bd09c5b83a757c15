import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { adminRequest, assertOpenAIError, startTestServer } from './helpers/server.ts';

const TOKEN = 'test-admin-token';
const small = { samples: 4, seq_len: 32, recovery_batch: 2, recovery_seq_len: 32, recovery_steps: 2, final_recovery_steps: 10 };

const admin = (s: RunningServer, method: string, p: string, body?: unknown) => adminRequest(s, TOKEN, method, p, body);

describe('POST /admin/prune with dry_run', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ adminToken: TOKEN })));
  after(() => s.close());

  it("answers the recipe's cost measured on this machine and starts no job", async () => {
    const res = await admin(s, 'POST', '/admin/prune', { target: 0.4, dry_run: true, ...small });
    assert.equal(res.status, 200);
    const e = (await res.json()) as Record<string, unknown> & { seconds: { total: number; candidates: number; final: number; scoring: number; sampling: number }; memory: { peakBytes: number }; measured: { trainStepSeconds: number; sampleTokenSeconds: number } };
    assert.equal(e.object, 'prune.estimate');
    // Five layers at 40%: two whole-layer steps (4 candidates) or three narrowing ones (5); the mean of the two.
    assert.deepEqual((e.paths as { path: string; candidates: number }[]).map((p) => [p.path, p.candidates]), [['depth-first', 4], ['width-first', 5]]);
    assert.equal(e.candidates, 4.5);
    assert.equal(e.trainingTokens, (4.5 * 2 + 10) * 2 * 32);
    assert.ok(e.seconds.total > 0 && Math.abs(e.seconds.total - (e.seconds.candidates + e.seconds.final + e.seconds.scoring + e.seconds.sampling)) < 1e-9 * e.seconds.total, JSON.stringify(e.seconds));
    // The default recovery text adds 524,288 tokens sampled from the model: their time, measured here, is in the total.
    assert.ok(e.measured.sampleTokenSeconds > 0);
    assert.ok(Math.abs(e.seconds.sampling - 524_288 * e.measured.sampleTokenSeconds) < 1e-9 * e.seconds.sampling);
    assert.ok(e.memory.peakBytes > 0 && (e.availableBytes as number) > e.memory.peakBytes);
    assert.equal(e.fits, true);
    assert.ok(e.measured.trainStepSeconds > 0);
    const jobs = (await (await admin(s, 'GET', '/admin/prune')).json()) as { data: unknown[] };
    assert.equal(jobs.data.length, 0, 'a dry run is not a job');
  });

  it('checks the recipe like a prune: a bad value is a 400 naming the field', async () => {
    const res = await admin(s, 'POST', '/admin/prune', { target: 0.4, dry_run: true, recovery_lr: 0 });
    assert.match((await assertOpenAIError(res, 400, 'recovery_lr')).message, /recovery_lr: expected a number/);
    const bad = await admin(s, 'POST', '/admin/prune', { target: 0.4, dry_run: 'yes' });
    assert.equal((await assertOpenAIError(bad, 400)).param, 'dry_run');
  });
});
