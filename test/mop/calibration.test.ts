import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { defaultCalibrationPath, defaultHeldoutPath, loadCalibration } from '../../src/mop/calibration.ts';
import { bundled } from './helpers.ts';

describe('calibration data', () => {
  it('draws N sequences of T tokens, BOS first, reproducibly for a seed', async () => {
    const { tokenizer } = await bundled();
    const a = await loadCalibration(tokenizer, { samples: 16, seqLen: 48, seed: 3 });
    assert.equal(a.sequences.length, 16);
    for (const s of a.sequences) {
      assert.equal(s.length, 48);
      assert.equal(s[0], tokenizer.bosTokenId);
      assert.ok(!s.subarray(1).includes(tokenizer.bosTokenId!), 'the text itself has no BOS');
    }
    assert.deepEqual(a.description, { source: 'bundled:data/tinystories-calibration.txt', samples: 16, seqLen: 48, seed: 3, textTokens: a.description.textTokens });
    const b = await loadCalibration(tokenizer, { samples: 16, seqLen: 48, seed: 3 });
    assert.deepEqual(b.sequences, a.sequences);
    const c = await loadCalibration(tokenizer, { samples: 16, seqLen: 48, seed: 4 });
    assert.notDeepEqual(c.sequences, a.sequences);
  });

  it('the sequences are distinct pieces of the text', async () => {
    const { tokenizer } = await bundled();
    const a = await loadCalibration(tokenizer, { samples: 64, seqLen: 32, seed: 0 });
    const keys = new Set(a.sequences.map((s) => s.join(',')));
    assert.equal(keys.size, 64);
  });

  it('the bundled calibration and held-out texts share no paragraph', () => {
    const cal = new Set(readFileSync(defaultCalibrationPath(), 'utf8').split(/\n\s*\n/).map((p) => p.trim()).filter((p) => p.length > 80));
    const held = readFileSync(defaultHeldoutPath(), 'utf8').split(/\n\s*\n/).map((p) => p.trim()).filter((p) => p.length > 80);
    assert.ok(cal.size > 100 && held.length > 100);
    assert.deepEqual(held.filter((p) => cal.has(p)), []);
  });
});
