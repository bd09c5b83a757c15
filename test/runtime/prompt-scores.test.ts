import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ScoringSession } from '../../src/runtime/engine/prompt-scores.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { loadStories } from './model-helpers.ts';

const model = await loadStories();
const tokenizer = createTokenizer(model.tokenizer);
const prompt = tokenizer.encode('Once upon a time, there was a little girl named Lily. She loved to play in the park with her friends.');
const other = tokenizer.encode('The cat sat on the mat and looked at the big red ball.');

describe('prompt scoring in pieces', () => {
  const whole = new ScoringSession(model.spec, model.weights, { maxContext: 256, threads: 1, chunk: 1024 });
  const pieces = new ScoringSession(model.spec, model.weights, { maxContext: 256, threads: 1, chunk: 5 });
  after(async () => {
    await whole.release();
    await pieces.release();
  });

  it('gives the scores of the whole prompt run at once, whatever the piece size', async () => {
    assert.ok(prompt.length > 20, `${prompt.length} tokens`);
    const a = await whole.scorePrompt(prompt, 3);
    const b = await pieces.scorePrompt(prompt, 3);
    assert.equal(b.logprobs.length, prompt.length);
    assert.equal(b.logprobs[0], null);
    for (let t = 1; t < prompt.length; t++) {
      assert.ok(Math.abs(a.logprobs[t]! - b.logprobs[t]!) < 1e-4, `token ${t}: ${a.logprobs[t]} vs ${b.logprobs[t]}`);
      assert.deepEqual(b.top[t]!.map((x) => x.token), a.top[t]!.map((x) => x.token), `top tokens at ${t}`);
    }
  });

  it('scores prompts asked for at the same time one after the other, each on its own tokens', async () => {
    const [x, y] = await Promise.all([pieces.scorePrompt(prompt, 1), pieces.scorePrompt(other, 1)]);
    const [xs, ys] = [await whole.scorePrompt(prompt, 1), await whole.scorePrompt(other, 1)];
    for (const [got, want] of [[x, xs], [y, ys]] as const) {
      assert.equal(got.logprobs.length, want.logprobs.length);
      got.logprobs.forEach((l, t) => t > 0 && assert.ok(Math.abs(l! - want.logprobs[t]!) < 1e-4, `token ${t}`));
    }
  });
});

describe('a scoring session whose build failed', () => {
  it('builds again on the next request instead of failing every later one', async () => {
    const weights = new Map(model.weights);
    const name = [...weights.keys()].find((k) => k.endsWith('down_proj.weight'))!;
    const held = weights.get(name)!;
    weights.delete(name);
    const scoring = new ScoringSession(model.spec, weights, { maxContext: 256, threads: 1 });
    try {
      await assert.rejects(scoring.scorePrompt(prompt, 1));
      weights.set(name, held);
      const scores = await scoring.scorePrompt(prompt, 1);
      assert.equal(scores.logprobs.length, prompt.length);
    } finally {
      await scoring.release();
    }
  });
});
