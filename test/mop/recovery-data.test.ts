import assert from 'node:assert/strict';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { defaultCalibrationPath, defaultHeldoutPath, tokenizeText } from '../../src/mop/calibration.ts';
import { loadRecoveryText } from '../../src/mop/recovery-data.ts';
import { bundled } from './helpers.ts';

describe('recovery text', () => {
  it('the default recovery text shares no 64-token run with the calibration or the held-out text, nor the calibration with the held-out text', async () => {
    const { tokenizer } = await bundled();
    const text = await loadRecoveryText(tokenizer, { seqLen: 128, batch: 16 });
    assert.deepEqual(text.description.sources, ['bundled:data/tinystories-recovery-start.txt', 'bundled:data/tinystories-recovery.txt']);
    assert.ok(text.windows.length > 1000, `${text.windows.length} windows`);
    // Half a training window. (Runs of ~32 tokens do recur: TinyStories is formulaic — "Once upon a
    // time, there was a little bird named …" — without any story being shared.)
    const K = 64;
    const runs = (file: string): Set<string> => {
      const tokens = tokenizeText(tokenizer, readFileSync(file, 'utf8'));
      const seen = new Set<string>();
      for (let i = 0; i + K <= tokens.length; i++) seen.add(tokens.slice(i, i + K).join(','));
      return seen;
    };
    const heldout = runs(defaultHeldoutPath());
    const calibration = runs(defaultCalibrationPath());
    const sharedWith = (seen: Set<string>) => {
      let shared = 0;
      for (const w of text.windows) for (let i = 1; i + K <= w.length; i++) if (seen.has(Array.from(w.subarray(i, i + K)).join(','))) shared++;
      return shared;
    };
    assert.equal(sharedWith(heldout), 0, 'recovery windows that repeat held-out text');
    assert.equal(sharedWith(calibration), 0, 'recovery windows that repeat calibration text');
    assert.equal([...calibration].filter((r) => heldout.has(r)).length, 0, 'calibration runs that repeat held-out text');
  });

  it('a recovery text file that is missing, empty or shorter than one batch is an error naming the numbers', async () => {
    const { tokenizer } = await bundled();
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-recovery-'));
    try {
      await assert.rejects(loadRecoveryText(tokenizer, { path: path.join(dir, 'nope.txt'), seqLen: 128, batch: 16 }), { name: 'MopInputError', message: /recovery data file not found/ });
      await fs.writeFile(path.join(dir, 'empty.txt'), '  \n');
      await assert.rejects(loadRecoveryText(tokenizer, { path: path.join(dir, 'empty.txt'), seqLen: 128, batch: 16 }), { name: 'MopInputError', message: /recovery data file is empty/ });
      await fs.writeFile(path.join(dir, 'short.txt'), 'Once upon a time there was a cat. '.repeat(20));
      await assert.rejects(loadRecoveryText(tokenizer, { path: path.join(dir, 'short.txt'), seqLen: 128, batch: 16 }), {
        name: 'MopInputError',
        message: /too short: it has \d+ tokens, one recovery batch of 16 × 128 needs 2048/,
      });
      const ok = await loadRecoveryText(tokenizer, { path: path.join(dir, 'short.txt'), seqLen: 16, batch: 2 });
      assert.ok(ok.windows.every((w) => w.length === 17 && w[0] === tokenizer.bosTokenId));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
