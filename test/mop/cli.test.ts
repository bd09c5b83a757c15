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
      // Recovery is on by default; a tiny budget keeps this test fast (flags and MOP_PRUNE_* alike).
      // 128 tokens per candidate at 2 × 32 tokens a step: 2 steps; 2048 tokens sampled from the model added to the text.
      const tiny = ['--recovery-tokens', '128', '--final-recovery-steps', '10', '--recovery-batch', '2', '--recovery-seq-len', '32', '--recovery-self-tokens', '2048'];
      const p = await mop(['prune', '--samples', '8', '--seq-len', '64', '--strategy', 'width', ...tiny, '--out', out], { MOP_PRUNE_TARGET: '0.2', MOP_PRUNE_RECOVERY_LOSS: 'ce' });
      assert.equal(p.code, 0, p.stderr);
      assert.match(p.stderr, /\[prune \d+\/\d+\] step 1/, 'plain progress lines when stderr is not a terminal');
      assert.match(p.stderr, /final recovery: recovery 10\/10, loss \d+\.\d+, \d+ tok\/s, ETA \d+ s/, 'recovery progress with loss, tokens/s and ETA');
      assert.ok((p.stderr.match(/final recovery: recovery/g) ?? []).length <= 10, 'a log gets at most a line per tenth of a recovery');
      assert.match(p.stderr, /width pruning to 20\.0%: reached 2\d\.\d%/);
      const report = JSON.parse(await fs.readFile(path.join(out, 'report.json'), 'utf8'));
      assert.equal(report.strategy, 'width');
      assert.equal(report.target, 0.2);
      assert.equal(report.recovery.recipe.kind, 'full');
      assert.equal(report.recovery.recipe.loss, 'ce');
      assert.match(report.recovery.data.sources.at(-1), /^self: 2048 tokens sampled from the model/);
      assert.equal(report.recovery.final.updates, 10);
      assert.equal(report.steps[0].candidates[0].recovery.steps, 2);

      const e = await mop(['eval', '--model', out, '--seq-len', '128']);
      assert.equal(e.code, 0, e.stderr);
      const m = /^perplexity: (\d+\.\d+)\ntokens: (\d+)\n$/.exec(e.stdout);
      assert.ok(m, e.stdout);
      assert.ok(Number(m[1]) > 1 && Number(m[2]) > 10000);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('prune --uniform (flag or MOP_PRUNE_UNIFORM) writes a plain LlamaConfig: every layer the same, no layer_shapes', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-cli-'));
    try {
      for (const [flags, env] of [[['--uniform'], {}], [[], { MOP_PRUNE_UNIFORM: 'true' }]] as const) {
        const out = path.join(dir, `uniform-${flags.length}`);
        const p = await mop(['prune', '--target', '0.3', '--samples', '8', '--seq-len', '64', '--recovery', 'none', ...flags, '--out', out], env);
        assert.equal(p.code, 0, p.stderr);
        const config = JSON.parse(await fs.readFile(path.join(out, 'config.json'), 'utf8'));
        assert.equal(config.layer_shapes, undefined);
        const report = JSON.parse(await fs.readFile(path.join(out, 'report.json'), 'utf8'));
        assert.equal(report.options.uniform, true);
        assert.ok(report.result.layers.every((l: unknown) => JSON.stringify(l) === JSON.stringify(report.result.layers[0])), JSON.stringify(report.result.layers));
      }
      const off = await mop(['prune', '--target', '0.3', '--out', path.join(dir, 'never')], { MOP_PRUNE_UNIFORM: 'maybe' });
      assert.match(off.stderr, /--uniform \/ MOP_PRUNE_UNIFORM: expected true, false, 1 or 0, got "maybe"/);
      const sub = await mop(['prune', '--target', '0.3', '--uniform', '--depth-unit', 'sublayer', '--out', path.join(dir, 'never')]);
      assert.match(sub.stderr, /--uniform keeps every layer whole .* depth unit must be layer/);
      assert.equal(sub.stderr.trim().split('\n').length, 1, sub.stderr);
      await assert.rejects(fs.stat(path.join(dir, 'never')));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('bad recovery options and recovery data fail with one line naming the option, before writing anything', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-cli-'));
    try {
      const out = path.join(dir, 'never');
      await fs.writeFile(path.join(dir, 'empty.txt'), '\n');
      await fs.writeFile(path.join(dir, 'short.txt'), 'Once upon a time there was a cat. '.repeat(20));
      const cases: [string[], RegExp][] = [
        [['--recovery-lr', '0'], /--recovery-lr \/ MOP_PRUNE_RECOVERY_LR: expected a number in \(0, 1\], got "0"/],
        [['--recovery-lr', 'Infinity'], /--recovery-lr \/ MOP_PRUNE_RECOVERY_LR: expected a number/],
        [['--recovery-steps', '-1'], /--recovery-steps \/ MOP_PRUNE_RECOVERY_STEPS: expected an integer in \[0, 100000\], got "-1"/],
        [['--recovery', 'half'], /unknown recovery 'half'; choose one of: none, lora, full/],
        [['--recovery-loss', 'mse'], /unknown recovery-loss 'mse'; choose one of: ce, kd/],
        [['--recovery', 'lora', '--recovery-lora-rank', '0'], /--recovery-lora-rank \/ MOP_PRUNE_RECOVERY_LORA_RANK: expected an integer in \[1, 4096\]/],
        [['--recovery', 'lora', '--recovery-lora-rank', '100'], /LoRA rank 100 exceeds the narrowest adapted layer width \(\d+\)/],
        [['--final-recovery-seconds', '-1'], /--final-recovery-seconds \/ MOP_PRUNE_FINAL_RECOVERY_SECONDS: expected a number in \(0, 604800\], got "-1"/],
        [['--final-recovery-tokens', '4096', '--final-recovery-seconds', '30'], /final-recovery-tokens and final-recovery-seconds are both set/],
        [['--width-multiple', '0'], /--width-multiple \/ MOP_PRUNE_WIDTH_MULTIPLE: expected an integer in \[1, 1024\], got "0"/],
        [['--budget', 'fast'], /unknown budget 'fast'; choose one of: params, latency/],
        [['--budget', 'latency', '--dtype', 'int3'], /int3/],
        [['--recovery-data', path.join(dir, 'nope.txt')], /recovery data file not found/],
        [['--recovery-data', path.join(dir, 'empty.txt')], /recovery data file is empty/],
        [['--recovery-data', path.join(dir, 'short.txt')], /too short: it has \d+ tokens, one recovery batch of 16 × 128 needs 2048/],
      ];
      // Independent processes: a few at a time (each is mostly start-up).
      const pending = [...cases];
      const runCases = async () => {
        for (let c = pending.shift(); c; c = pending.shift()) {
          const [flags, pattern] = c;
          const r = await mop(['prune', '--target', '0.3', '--samples', '8', '--seq-len', '64', ...flags, '--out', out]);
          assert.notEqual(r.code, 0, flags.join(' '));
          assert.match(r.stderr, pattern, flags.join(' '));
          assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
        }
      };
      await Promise.all([runCases(), runCases(), runCases()]);
      await assert.rejects(fs.stat(out));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it("prune --estimate prints the recipe's cost and prunes nothing; a recipe above --memory-limit is refused with what fits", async () => {
    const small = ['--target', '0.4', '--samples', '4', '--seq-len', '32', '--recovery-batch', '2', '--recovery-seq-len', '32', '--recovery-steps', '2', '--final-recovery-steps', '10'];
    const e = await mop(['prune', ...small, '--estimate']);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /MoP steps: 2 \(depth-first\) to 3 \(width-first\), candidates scored: 4 \(depth-first\) to 5 \(width-first\)/);
    // The mean of the two paths: (4.5 candidates × 2 steps + 10 final) × 2 × 32 tokens.
    assert.match(e.stdout, /recovery training tokens: ~1,216/);
    assert.match(e.stdout, /predicted wall time: \d+(\.\d)? (s|min) \(.*, sampling recovery text \d+(\.\d)? (s|min) \(none when the model store holds the sample\)/);
    assert.match(e.stdout, /peak memory: ~\d+\.\d+ GiB .* of \d+\.\d+ GiB available/);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-cli-memory-'));
    try {
      const big = await mop(['prune', ...small, '--out', path.join(dir, 'never')], { MOP_MEMORY_LIMIT: '0.1' });
      assert.notEqual(big.code, 0);
      assert.match(big.stderr, /needs about 0\.\d GiB of memory at its peak .* and 0\.1 GiB is available; what fits: .*--recovery-loss ce/);
      await assert.rejects(fs.stat(path.join(dir, 'never')));
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
