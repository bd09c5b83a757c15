import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { widthCandidate } from '../../src/mop/candidates.ts';
import { MopInputError } from '../../src/mop/errors.ts';
import { runMop } from '../../src/mop/mop.ts';
import { fullPlan, keptNeurons } from '../../src/mop/pruning-plan.ts';
import { bundled } from './helpers.ts';

describe('--width-multiple', () => {
  it('every MLP a prune narrows keeps a multiple of the width multiple, and the target is still reached', async () => {
    const { model, calibration } = await bundled();
    for (const strategy of ['mop', 'width'] as const) {
      const { report } = await runMop(model, { target: 0.3, calibration, strategy, widthMultiple: 8 });
      assert.ok(Math.abs(report.result.ratio - 0.3) <= 0.005, `${strategy}: ratio ${report.result.ratio}`);
      assert.equal(report.options.widthMultiple, 8);
      const base = model.spec.layers[0]!.ffn; // 172: not itself a multiple of 8
      const narrowed = report.result.layers.filter((l) => l.ffn > 0 && l.ffn < base);
      assert.ok(narrowed.length > 0 || strategy === 'mop', `${strategy} narrowed no MLP`);
      for (const l of narrowed) assert.equal(l.ffn % 8, 0, `${strategy}: an MLP of ${l.ffn} neurons`);
    }
  });

  it('without a multiple the same prune leaves widths that are not multiples of 8 (the option is what aligns them)', async () => {
    const { model, calibration } = await bundled();
    const { report } = await runMop(model, { target: 0.3, calibration, strategy: 'width' });
    assert.ok(report.result.layers.some((l) => l.ffn % 8 !== 0), JSON.stringify(report.result.layers.map((l) => l.ffn)));
  });

  it('neurons go in chunks, least important first: the remainder chunk, then whole multiples', () => {
    const spec = { architecture: 'llama' as const, vocabSize: 16, hidden: 4, layers: [{ heads: 1, kvHeads: 1, headDim: 4, ffn: 10 }], normEps: 1e-5, rope: { theta: 10000 }, tiedEmbeddings: true, bosTokenId: 1, eosTokenIds: [2], maxContext: 8 };
    const plan = fullPlan(spec);
    // Neuron j's importance is 10 - j: neuron 9 is the least important.
    const neuronScores = [Float64Array.from({ length: 10 }, (_, j) => 10 - j)];
    const kvScores = [null];
    const per = 3 * spec.hidden;
    // A budget of 3 neurons: the remainder chunk (10 mod 4 = 2) is taken, a whole chunk of 4 would overshoot.
    const small = widthCandidate(spec, plan, kvScores, neuronScores, 3 * per, { split: 'global', normalize: 'none', multiple: 4 })!;
    assert.equal(keptNeurons(small.plan, 0), 8);
    assert.deepEqual([...small.plan.layers[0]!.neurons], [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    // Six neurons: the remainder and the next chunk of 4 (the four least important left).
    const big = widthCandidate(spec, plan, kvScores, neuronScores, 6 * per, { split: 'global', normalize: 'none', multiple: 4 })!;
    assert.deepEqual([...big.plan.layers[0]!.neurons], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
  });

  it('a multiple too coarse for the target is a clear error that names the option', async () => {
    const { model, calibration } = await bundled();
    await assert.rejects(
      runMop(model, { target: 0.1, calibration, strategy: 'width', widthMultiple: 172 }),
      (e: unknown) => e instanceof MopInputError && /width-multiple/.test(e.message),
    );
    await assert.rejects(runMop(model, { target: 0.3, calibration, widthMultiple: 0 }), (e: unknown) => e instanceof MopInputError && /width multiple/.test(e.message));
  });
});
