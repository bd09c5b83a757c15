import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, postJson, startTestServer } from './helpers/server.ts';

const TOKEN = 'test-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const quick = { samples: 8, seq_len: 64 };

function admin(s: RunningServer, method: string, p: string, body?: unknown): Promise<Response> {
  return fetch(s.url + p, { method, headers: { 'content-type': 'application/json', ...auth }, ...(body !== undefined && { body: JSON.stringify(body) }) });
}

describe('POST /admin/prune with recovery fine-tuning', () => {
  let s: RunningServer;
  let dir: string;
  before(async () => {
    // Files an admin request names must lie under --data-dir.
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-recovery-http-'));
    await fs.writeFile(path.join(dir, 'empty.txt'), '\n');
    await fs.writeFile(path.join(dir, 'short.txt'), 'Once upon a time there was a cat. '.repeat(20));
    s = await startTestServer({ adminToken: TOKEN, dataDir: dir });
  });
  after(async () => {
    await s.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('rejects bad recovery options and data with 400s naming the field, and keeps serving', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ recovery_lr: 0 }, /recovery_lr: expected a number in \(0, 1\], got 0/],
      [{ recovery_lr: -1e-3 }, /recovery_lr: expected a number/],
      [{ recovery_lr: '2e-3' }, /recovery_lr: expected a number/],
      [{ recovery_steps: -1 }, /recovery_steps: expected an integer in \[0, 100000\], got -1/],
      [{ final_recovery_steps: 1.5 }, /final_recovery_steps: expected an integer/],
      [{ recovery: 'half' }, /unknown recovery 'half'; choose one of: none, lora, full/],
      [{ recovery_loss: 'mse' }, /unknown recovery-loss 'mse'; choose one of: ce, kd/],
      [{ recovery: 'lora', recovery_lora_rank: 0 }, /recovery_lora_rank: expected an integer in \[1, 4096\]/],
      [{ recovery: 'lora', recovery_lora_rank: 100 }, /LoRA rank 100 exceeds the narrowest adapted layer width/],
      [{ recovery_tokens: 0 }, /recovery_tokens: expected an integer in \[1, 1000000000000\], got 0/],
      [{ recovery_seconds: 0 }, /recovery_seconds: expected a number in \(0, 86400\], got 0/],
      [{ recovery_seconds: '5' }, /recovery_seconds: expected a number/],
      [{ recovery_tokens: 4096, recovery_seconds: 5 }, /recovery-tokens and recovery-seconds are both set/],
      [{ depth_rule: 'first' }, /unknown depth-rule 'first'; choose one of: score, third-to-last/],
      [{ recovery_data: path.join(dir, 'nope.txt') }, /recovery_data must name a regular file under the server's data directory/],
      [{ recovery_data: path.join(dir, 'empty.txt') }, /recovery data file is empty/],
      [{ recovery_data: path.join(dir, 'short.txt') }, /too short: it has \d+ tokens, one recovery batch of 16 × 128 needs 2048/],
    ];
    for (const [fields, message] of cases) {
      const err = await assertOpenAIError(await admin(s, 'POST', '/admin/prune', { target: 0.3, ...quick, ...fields }), 400);
      assert.match(err.message, message, JSON.stringify(fields));
    }
    const ok = await postJson(`${s.url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 4, temperature: 0 });
    assert.equal(ok.status, 200);
    assert.equal(((await (await admin(s, 'GET', '/admin/prune')).json()) as { data: unknown[] }).data.length, 0, 'no job was started');
  });

  it('GET /admin/prune/{id} shows recovery progress (step, loss, tokens/s, ETA), and DELETE cancels during a recovery', async () => {
    // No sampled text: the minute it takes would come before the recovery this test watches.
    const body = { target: 0.2, strategy: 'depth', ...quick, recovery_steps: 2, final_recovery_steps: 100_000, recovery_batch: 2, recovery_seq_len: 32, recovery_self_tokens: 0, activate: false };
    const started = await admin(s, 'POST', '/admin/prune', body);
    assert.equal(started.status, 202);
    const { id } = (await started.json()) as { id: string };
    type Progress = { recovery?: { phase: string; step: number; steps: number; loss: number; tokensPerSecond: number; etaSeconds: number } };
    let progress = null as Progress | null;
    const end = Date.now() + 60_000;
    while (Date.now() < end) {
      const job = (await (await admin(s, 'GET', `/admin/prune/${id}`)).json()) as { status: string; progress: Progress | null };
      assert.equal(job.status, 'running');
      if (job.progress?.recovery?.phase === 'final' && job.progress.recovery.step >= 2) {
        progress = job.progress;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = progress?.recovery;
    assert.ok(r, 'the final recovery showed in the job view');
    assert.equal(r.steps, 100_000);
    assert.ok(Number.isFinite(r.loss) && r.tokensPerSecond > 0 && r.etaSeconds > 0);
    const t0 = performance.now();
    const cancelled = await admin(s, 'DELETE', `/admin/prune/${id}`);
    assert.equal(cancelled.status, 200);
    assert.equal(((await cancelled.json()) as { status: string }).status, 'cancelled');
    assert.ok(performance.now() - t0 < 5000, 'cancelled promptly');
    assert.deepEqual(
      (((await (await admin(s, 'GET', '/admin/models')).json()) as { data: { id: string }[] }).data).map((m) => m.id),
      ['stories260K'],
      'a cancelled job registers nothing',
    );
  });
});
