import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { klDivergence, perplexity, textWindows } from '../../src/mop/evaluate.ts';
import { removeLayer } from '../../src/mop/surgery.ts';
import { referenceForward } from '../helpers/reference-forward.ts';
import { bundled } from './helpers.ts';

const TEXT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. One day, she saw a big red ball.';

describe('evaluation', () => {
  it('cuts text into BOS-led non-overlapping windows that predict every token once', async () => {
    const { tokenizer } = await bundled();
    const stream = tokenizer.encode(TEXT, { addBos: false });
    const w = textWindows(tokenizer, TEXT, 16);
    assert.equal(w.tokens, stream.length);
    assert.deepEqual(w.sequences.flatMap((s) => [...s.subarray(1)]), stream);
    assert.ok(w.sequences.every((s) => s[0] === tokenizer.bosTokenId && s.length <= 16));
  });

  it('perplexity equals exp(mean NLL) from the reference forward pass', async () => {
    const { model, tokenizer } = await bundled();
    const w = textWindows(tokenizer, TEXT, 16);
    let nll = 0;
    for (const s of w.sequences) {
      const logits = referenceForward(model.spec, model.weights, [...s]);
      const V = model.spec.vocabSize;
      for (let t = 0; t + 1 < s.length; t++) {
        const row = logits.subarray(t * V, (t + 1) * V);
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
        nll += lse - row[s[t + 1]!]!;
      }
    }
    const expected = Math.exp(nll / w.tokens);
    const got = await perplexity(model, w, { threads: 1 });
    assert.equal(got.tokens, w.tokens);
    assert.ok(Math.abs(got.perplexity - expected) / expected < 1e-4, `${got.perplexity} vs ${expected}`);
  });

  it('KL divergence to itself is 0 and grows when a layer is removed', async () => {
    const { model, tokenizer } = await bundled();
    const w = textWindows(tokenizer, TEXT, 32);
    const self = await klDivergence(model, model, w);
    assert.ok(Math.abs(self.meanKl) < 1e-6);
    const pruned = await klDivergence(model, removeLayer(model, 2), w);
    assert.ok(pruned.meanKl > 0.01);
  });
});
