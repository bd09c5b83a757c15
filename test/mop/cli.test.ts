import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

/** Run the mop CLI from source; resolves with exit code and output even when it fails. */
async function mop(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli/mop.ts', ...args], { cwd: root, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('mop prune / mop eval', () => {
  it('prune writes a loadable directory with report.json; eval prints its perplexity and token count', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-cli-'));
    try {
      const out = path.join(dir, 'pruned');
      const p = await mop(['prune', '--samples', '8', '--seq-len', '64', '--strategy', 'width', '--out', out], { MOP_PRUNE_TARGET: '0.2' });
      assert.equal(p.code, 0, p.stderr);
      assert.match(p.stderr, /\[prune \d+\/\d+\] step 1/, 'plain progress lines when stderr is not a terminal');
      assert.match(p.stderr, /width pruning to 20\.0%: reached 2\d\.\d%/);
      const report = JSON.parse(await fs.readFile(path.join(out, 'report.json'), 'utf8'));
      assert.equal(report.strategy, 'width');
      assert.equal(report.target, 0.2);

      const e = await mop(['eval', '--model', out, '--seq-len', '128']);
      assert.equal(e.code, 0, e.stderr);
      const m = /^perplexity: (\d+\.\d+)\ntokens: (\d+)\n$/.exec(e.stdout);
      assert.ok(m, e.stdout);
      assert.ok(Number(m[1]) > 1 && Number(m[2]) > 10000);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('a bad target fails with the reason and without writing anything (other bad input: bad-input.test.ts)', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-cli-'));
    try {
      const out = path.join(dir, 'never');
      const target = await mop(['prune', '--target', '1.5', '--out', out]);
      assert.notEqual(target.code, 0);
      assert.match(target.stderr, /--target \/ MOP_PRUNE_TARGET: expected a fraction in \(0, 0\.9\], got "1\.5"/);
      await assert.rejects(fs.stat(out));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
