import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The prepared GPU check, rehearsed on the CPU with the tiny preset: the same script, parts and
 * JSON a GPU host runs, in seconds, so the check cannot rot between the rare GPU runs.
 */
describe('scripts/gpu-check.sh', () => {
  it('rehearses every part on the CPU and writes one JSON file with every figure', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpu-check-'));
    const out = path.join(dir, 'gpu-check.json');
    const args = ['--device', 'cpu', '--preset', 'tiny', '--contexts', '32,128', '--batches', '1,2', '--steps', '4', '--requests', '2,4', '--max-tokens', '4', '--samples', '4', '--seq-len', '32', '--bandwidth-gbs', '100'];
    const r = spawnSync('bash', [path.join(root, 'scripts/gpu-check.sh'), ...args], { cwd: root, env: { ...process.env, GPU_CHECK_OUT: out }, encoding: 'utf8', timeout: 240_000 });
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    const report = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.deepEqual(report.errors, {});
    assert.deepEqual(report.skipped, []);
    assert.deepEqual(report.device.target, { device: 'cpu', dtype: 'float32' });
    assert.equal(report.device.cuda.available, false);
    for (const k of ['float16', 'float32', 'longPromptOneRun', 'longPromptDefaultChunks']) {
      assert.equal(report.parity[k].pass, true, `parity ${k}: ${JSON.stringify(report.parity[k])}`);
    }
    assert.equal(report.parity.float32.maxAbsDiff, 0);
    assert.ok(report.parity.float16.maxAbsDiff > 0);
    assert.equal(report.device.cudaNative.available, false);
    assert.deepEqual(report.decodeSteps.chosen, { device: 'cpu', dtype: 'float32' });
    const cpu = report.decodeSteps.paths.cpu;
    assert.equal(cpu.rows.length, 4);
    for (const row of cpu.rows) assert.ok(row.msPerStep > 0 && row.tokensPerSec > 0, JSON.stringify(row));
    assert.ok(cpu.batch1BandwidthFraction > 0);
    assert.ok(cpu.prefill.tokensPerSec > 0);
    assert.ok(Math.abs(report.prune.achieved - 0.4) <= 0.005, `achieved ${report.prune.achieved}`);
    assert.ok(report.prune.parameters < report.model.parameters);
    for (const c of ['c1', 'c8']) {
      assert.equal(report.speedup.dense[c].failed, 0);
      assert.equal(report.speedup.pruned[c].failed, 0);
      assert.ok(report.speedup.latencyRatio[c] > 0);
    }
    assert.match(r.stdout, /gpu-check: exit 0; figures in/);
  });
});
