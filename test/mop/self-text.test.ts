import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateSelfText, loadSelfRecoveryText, promptsFromCalibration, type SelfTextCache, type SelfTextRecipe } from '../../src/mop/self-text.ts';
import { bundled } from './helpers.ts';

describe('recovery text sampled from the model itself', () => {
  it('is the same for a seed, different for another, and reads like the model (stories)', async () => {
    const { model, tokenizer, calibration } = await bundled();
    const prompts = promptsFromCalibration(calibration.sequences);
    const options = { tokens: 1500, seed: 3, prompts, threads: 1 };
    const a = await generateSelfText(model, tokenizer, options);
    const b = await generateSelfText(model, tokenizer, options);
    const c = await generateSelfText(model, tokenizer, { ...options, seed: 4 });
    assert.equal(a.length, 1500);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    assert.ok(a.every((t) => t >= 0 && t < model.spec.vocabSize));
    const text = tokenizer.decode(a);
    // stories260K writes TinyStories English: common words come out.
    assert.match(text, /\b(the|and|was)\b/);
    // Samples are separated by BOS and begin with a calibration prompt.
    assert.ok(a.filter((t) => t === tokenizer.bosTokenId).length >= 1);
    assert.deepEqual(a.slice(0, prompts[0]!.length), prompts[0]);
  });

  it('is sampled once per recipe when a cache is given, then read from it', async () => {
    const { model, tokenizer, calibration } = await bundled();
    const stored = new Map<string, number[]>();
    let saves = 0;
    const cache: SelfTextCache = {
      load: async (r: SelfTextRecipe) => stored.get(JSON.stringify(r)),
      save: async (r, tokens) => {
        saves++;
        stored.set(JSON.stringify(r), [...tokens]);
      },
    };
    const options = { tokens: 1024, seed: 0, prompts: promptsFromCalibration(calibration.sequences), threads: 1, seqLen: 64, batch: 4, cache };
    const first = await loadSelfRecoveryText(model, tokenizer, options);
    const second = await loadSelfRecoveryText(model, tokenizer, options);
    assert.equal(saves, 1);
    assert.deepEqual(second.windows, first.windows);
    assert.match(second.description.sources[0]!, /self: 1024 tokens .*cached/);
    assert.equal(first.windows.length, Math.floor(1024 / 64));
  });
});
