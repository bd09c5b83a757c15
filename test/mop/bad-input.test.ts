import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parameterCounts } from '../../src/runtime/model/spec.ts';
import { syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import { calibrationFromText, loadCalibration } from '../../src/mop/calibration.ts';
import { MopInputError } from '../../src/mop/errors.ts';
import { runMop, type MopOptions } from '../../src/mop/mop.ts';
import { bundled } from './helpers.ts';

const isInputError = (pattern: RegExp) => (e: unknown) => e instanceof MopInputError && e.name === 'MopInputError' && pattern.test(e.message);

describe('bad input is refused with a MopInputError that says what is wrong', () => {
  it('a target outside (0, 0.9]', async () => {
    const { model, calibration } = await bundled();
    for (const target of [0, -0.1, 0.95, 1, Number.NaN]) {
      await assert.rejects(runMop(model, { target, calibration }), isInputError(/target must be a fraction in \(0, 0.9\]/), `target ${target}`);
    }
  });

  it('an unknown strategy, criterion or importance', async () => {
    const { model, calibration } = await bundled();
    await assert.rejects(runMop(model, { target: 0.2, calibration, strategy: 'random' } as unknown as MopOptions), isInputError(/unknown strategy 'random'; choose one of: mop, depth, width/));
    await assert.rejects(runMop(model, { target: 0.2, calibration, criterion: 'bleu' } as unknown as MopOptions), isInputError(/unknown criterion 'bleu'; choose one of: ppl, kl, cosine/));
    await assert.rejects(runMop(model, { target: 0.2, calibration, importance: 'taylor' }), isInputError(/unknown importance 'taylor'/));
  });

  it('a calibration file that is missing, empty, or too short for the samples asked', async () => {
    const { tokenizer } = await bundled();
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-cal-'));
    try {
      await assert.rejects(loadCalibration(tokenizer, { path: path.join(dir, 'nope.txt'), samples: 4, seqLen: 32, seed: 0 }), isInputError(/calibration file not found: .*nope\.txt/));
      await fs.writeFile(path.join(dir, 'empty.txt'), '\n  \n');
      await assert.rejects(loadCalibration(tokenizer, { path: path.join(dir, 'empty.txt'), samples: 4, seqLen: 32, seed: 0 }), isInputError(/calibration file is empty/));
      await fs.writeFile(path.join(dir, 'short.txt'), 'Once upon a time there was a cat.');
      const tokens = tokenizer.encode('Once upon a time there was a cat.', { addBos: false }).length;
      await assert.rejects(
        loadCalibration(tokenizer, { path: path.join(dir, 'short.txt'), samples: 4, seqLen: 32, seed: 0 }),
        isInputError(new RegExp(`has ${tokens} tokens, 4 samples of 32 tokens need 124`)),
      );
      await assert.rejects(loadCalibration(tokenizer, { samples: 0, seqLen: 32, seed: 0 }), isInputError(/samples must be a positive integer/));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('a model that cannot be pruned as asked: one layer (by depth or MoP), or already at the target', async () => {
    const { tokenizer, calibration } = await bundled();
    const spec = syntheticSpec({ vocabSize: 512, hidden: 32, layers: 1, heads: 2, kvHeads: 1, ffn: 64, maxContext: 128 });
    const one = { spec, weights: syntheticWeights(spec, 1) };
    const cal = calibrationFromText(tokenizer, 'Once upon a time there was a cat. '.repeat(40), { samples: 2, seqLen: 16, seed: 0, source: 'inline' });
    await assert.rejects(runMop(one, { target: 0.3, calibration: cal }), isInputError(/has 1 layer; MoP needs at least 2/));
    await assert.rejects(runMop(one, { target: 0.3, strategy: 'depth', calibration: cal }), isInputError(/depth pruning needs at least 2/));
    const width = await runMop(one, { target: 0.3, strategy: 'width', calibration: cal });
    assert.ok(Math.abs(width.report.result.ratio - 0.3) <= 0.005, 'width-only still works on one layer');

    const { model } = await bundled();
    const blocks = parameterCounts(model.spec).blocks;
    await assert.rejects(
      runMop(model, { target: 0.3, calibration, referenceBlocks: Math.round(blocks / 0.6) }),
      isInputError(/already at 40\.0% compression, target 30\.0%/),
    );
  });

  it('calibration sequences longer than the model context', async () => {
    const { tokenizer } = await bundled();
    const spec = syntheticSpec({ vocabSize: 512, hidden: 32, layers: 2, heads: 2, kvHeads: 1, ffn: 64, maxContext: 8 });
    const cal = calibrationFromText(tokenizer, 'Once upon a time there was a cat. '.repeat(40), { samples: 2, seqLen: 16, seed: 0, source: 'inline' });
    await assert.rejects(runMop({ spec, weights: syntheticWeights(spec, 1) }, { target: 0.3, calibration: cal }), isInputError(/exceed the model's context of 8/));
  });
});
