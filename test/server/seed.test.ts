import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { choiceSeed } from '../../src/server/sampling.ts';
import { postJson, startTestServer } from './helpers/server.ts';

describe('per-choice seeds', () => {
  it('keep choice 0 on the request seed and give every choice a safe integer, for every accepted seed', () => {
    for (const seed of [0, 1, 42, -1, 2 ** 32, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]) {
      assert.equal(choiceSeed(seed, 0), seed);
      const seeds = Array.from({ length: 16 }, (_, j) => choiceSeed(seed, j));
      for (const s of seeds) assert.ok(Number.isSafeInteger(s), `seed ${seed}: ${s}`);
      assert.equal(new Set(seeds).size, seeds.length, `seed ${seed}: the choices' seeds differ`);
      assert.deepEqual(
        Array.from({ length: 16 }, (_, j) => choiceSeed(seed, j)),
        seeds,
        'deterministic',
      );
    }
  });

  it("do not hand one request's choice the seed of a neighbouring request's choice 0", () => {
    assert.notEqual(choiceSeed(42, 1), 43);
    assert.notEqual(choiceSeed(42, 1), choiceSeed(43, 0));
  });
});

describe('seeds at the ends of the accepted range', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ maxBatch: 2 })));
  after(async () => s.close());

  for (const seed of [Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]) {
    it(`answer seed ${seed} with n: 2 by two choices, the same every time`, async () => {
      const body = { prompt: 'Once upon a time', max_tokens: 8, temperature: 1, seed, n: 2 };
      const texts: string[][] = [];
      for (let i = 0; i < 2; i++) {
        const res = await postJson(`${s.url}/v1/completions`, body);
        const text = await res.text();
        assert.equal(res.status, 200, text);
        const choices = (JSON.parse(text) as { choices: { index: number; text: string }[] }).choices;
        assert.deepEqual(
          choices.map((c) => c.index),
          [0, 1],
        );
        texts.push(choices.map((c) => c.text));
      }
      assert.deepEqual(texts[1], texts[0], 'same seed, same choices');
    });
  }
});
