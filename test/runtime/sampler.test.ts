import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRng } from '../../src/runtime/engine/rng.ts';
import { applyPenalties, Sampler, selectTop, TokenHistory } from '../../src/runtime/engine/sampler.ts';
import type { SampleResult } from '../../src/runtime/engine/sampler.ts';
import { defaultSamplingParams, SamplingParamsError, validateSamplingParams } from '../../src/runtime/engine/sampling-params.ts';
import type { SamplingParams } from '../../src/runtime/engine/sampling-params.ts';

function params(overrides: Partial<SamplingParams> = {}): SamplingParams {
  return defaultSamplingParams({ seed: 1234, ...overrides });
}

/** Logits whose softmax is exactly `probs` (up to float32 rounding). */
function logitsOf(probs: number[]): Float32Array {
  return Float32Array.from(probs, (p) => Math.log(p));
}

function draws(p: SamplingParams, logits: Float32Array, n: number, history = new TokenHistory()): number[] {
  const sampler = new Sampler(p, logits.length);
  return Array.from({ length: n }, () => sampler.sample(logits, history).token);
}

function drawnSet(p: SamplingParams, logits: Float32Array, n = 3000): number[] {
  return [...new Set(draws(p, logits, n))].sort((a, b) => a - b);
}

function logSoftmax(logits: ArrayLike<number>): number[] {
  const xs = Array.from(logits);
  const max = Math.max(...xs);
  const lse = max + Math.log(xs.reduce((s, x) => s + Math.exp(x - max), 0));
  return xs.map((x) => x - lse);
}

function randomLogits(vocab: number, seed: number, scale = 4): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: vocab }, () => (rng.nextFloat() - 0.5) * 2 * scale);
}

function argmax(xs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

describe('rng', () => {
  it('repeats its sequence for the same seed and stays in [0, 1)', () => {
    const a = createRng(7);
    const b = createRng(7);
    for (let i = 0; i < 1000; i++) {
      const x = a.nextFloat();
      assert.equal(x, b.nextFloat());
      assert.ok(x >= 0 && x < 1);
    }
  });

  it('differs across seeds, including seeds that differ only above bit 32', () => {
    const seq = (seed: number) => Array.from({ length: 8 }, ((r) => () => r.nextUint32())(createRng(seed)));
    assert.notDeepEqual(seq(1), seq(2));
    assert.notDeepEqual(seq(5), seq(5 + 2 ** 32));
  });

  it('is seeded from crypto random when no seed is given', () => {
    assert.notEqual(createRng().nextUint32(), createRng().nextUint32());
  });
});

describe('greedy sampling', () => {
  it('picks the argmax', () => {
    assert.deepEqual(draws(params({ temperature: 0 }), Float32Array.of(0.1, -2, 3.5, 1), 5), [2, 2, 2, 2, 2]);
  });

  it('breaks ties toward the lowest id', () => {
    assert.equal(draws(params({ temperature: 0 }), Float32Array.of(1, 5, 3, 5, 5), 1)[0], 1);
  });

  it('top-k = 1 equals greedy at any temperature', () => {
    const logits = randomLogits(1000, 3);
    for (const temperature of [0.3, 1, 5, 100]) {
      assert.deepEqual(draws(params({ temperature, topK: 1 }), logits, 50), Array(50).fill(argmax(logits)));
    }
  });
});

describe('seeded sampling', () => {
  const logits = randomLogits(500, 11, 2);

  it('same seed gives the same 200-token sequence', () => {
    assert.deepEqual(draws(params({ seed: 99 }), logits, 200), draws(params({ seed: 99 }), logits, 200));
  });

  it('different seeds give different sequences', () => {
    assert.notDeepEqual(draws(params({ seed: 99 }), logits, 200), draws(params({ seed: 100 }), logits, 200));
  });
});

describe('truncation', () => {
  it('top-k never draws outside the k best', () => {
    const logits = randomLogits(2000, 5);
    const best = new Set(Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!).slice(0, 10));
    const drawn = drawnSet(params({ topK: 10, temperature: 3 }), logits);
    assert.deepEqual(drawn, [...best].sort((a, b) => a - b));
  });

  it('top-p keeps the smallest set whose mass reaches p', () => {
    // Sorted masses: 0.5 (id 2), 0.3 (id 0), 0.15 (id 3), 0.05 (id 1).
    const logits = logitsOf([0.3, 0.05, 0.5, 0.15]);
    assert.deepEqual(drawnSet(params({ topP: 0.45 }), logits), [2]);
    assert.deepEqual(drawnSet(params({ topP: 0.75 }), logits), [0, 2]);
    assert.deepEqual(drawnSet(params({ topP: 0.9 }), logits), [0, 2, 3]);
    assert.deepEqual(drawnSet(params({ topP: 0.99 }), logits), [0, 1, 2, 3]);
    // Same answer through the top-k path (sorted candidates already selected).
    assert.deepEqual(drawnSet(params({ topP: 0.75, topK: 3 }), logits), [0, 2]);
  });

  it('top-p renormalises after top-k', () => {
    // Within the top 2 (0.5, 0.3) the masses are 0.625, 0.375: p = 0.6 keeps only the first.
    const logits = logitsOf([0.3, 0.05, 0.5, 0.15]);
    assert.deepEqual(drawnSet(params({ topP: 0.6, topK: 2 }), logits), [2]);
  });

  it('top-p finds a wide nucleus in a large flat vocabulary', () => {
    // Decreasing logits: the nucleus is a prefix of ids, far wider than the first selection try.
    const vocab = 10000;
    const logits = Float32Array.from({ length: vocab }, (_, i) => -i * 4e-4);
    const probs = logSoftmax(logits).map(Math.exp);
    let cut = 0;
    for (let cum = 0; cum < 0.5; cut++) cum += probs[cut]!;
    const drawn = draws(params({ topP: 0.5 }), logits, 1500);
    assert.ok(Math.max(...drawn) <= cut, `drew ${Math.max(...drawn)}, nucleus ends at ${cut - 1}`);
    assert.ok(Math.max(...drawn) > cut - 50, 'draws should reach the end of the nucleus');
  });

  it('min-p excludes tokens below minP × pmax', () => {
    // pmax = 0.5, minP 0.3 ⇒ threshold 0.15: ids 2 (0.1) and 3 (0.04) go, id 4 (0.16) stays.
    const logits = logitsOf([0.5, 0.2, 0.1, 0.04, 0.16]);
    assert.deepEqual(drawnSet(params({ minP: 0.3 }), logits), [0, 1, 4]);
    assert.deepEqual(drawnSet(params({ minP: 0.3, topK: 4 }), logits), [0, 1, 4]);
    assert.deepEqual(drawnSet(params({ minP: 0.3, topP: 0.99 }), logits), [0, 1, 4]);
    // Temperature reshapes the distribution first: at T = 2, p ∝ sqrt(p), so id 2 (sqrt(0.2) ≈ 0.447 of pmax) passes.
    assert.deepEqual(drawnSet(params({ minP: 0.4, temperature: 2 }), logits), [0, 1, 2, 4]);
  });
});

describe('temperature sampling', () => {
  for (const temperature of [0.7, 1, 2]) {
    it(`draw frequencies match softmax(logits / ${temperature})`, () => {
      const logits = Float32Array.of(2, 1, 0.5, 0, -1);
      const expected = logSoftmax(Array.from(logits, (x) => x / temperature)).map(Math.exp);
      const n = 20000;
      const counts = new Array<number>(logits.length).fill(0);
      for (const t of draws(params({ temperature, seed: 42 }), logits, n)) counts[t]!++;
      const chiSquare = counts.reduce((s, c, i) => s + (c - n * expected[i]!) ** 2 / (n * expected[i]!), 0);
      // df = 4: P(χ² > 25) ≈ 5e-5. With a fixed seed this is deterministic, never flaky.
      assert.ok(chiSquare < 25, `χ² = ${chiSquare.toFixed(2)}, counts ${counts}`);
    });
  }
});

describe('penalties', () => {
  it('presence and frequency penalise generated tokens only, by count', () => {
    const history = new TokenHistory([0, 1]);
    for (const id of [2, 2, 3]) history.push(id);
    const out = applyPenalties(Float32Array.of(1, 1, 1, 1, 1), history, {
      presencePenalty: 0.5,
      frequencyPenalty: 0.25,
      repetitionPenalty: 1,
    });
    assert.deepEqual(Array.from(out), [1, 1, 1 - (0.5 + 2 * 0.25), 1 - (0.5 + 0.25), 1]);
  });

  it('repetition divides positive and multiplies negative logits of prompt and generated tokens', () => {
    const history = new TokenHistory([0, 1]);
    history.push(2);
    history.push(3);
    history.push(3);
    const out = applyPenalties(Float32Array.of(2, -2, 4, -1, 3), history, {
      presencePenalty: 0,
      frequencyPenalty: 0,
      repetitionPenalty: 2,
    });
    // Applied once per token, however often it repeats; id 4 never appeared.
    assert.deepEqual(Array.from(out), [1, -4, 2, -2, 3]);
  });

  it('the history keeps counts and the seen set incrementally', () => {
    const history = new TokenHistory([7, 8]);
    history.push(8);
    history.push(9);
    history.push(9);
    assert.deepEqual([...history.generatedCounts], [[8, 1], [9, 2]]);
    assert.deepEqual([...history.seen].sort(), [7, 8, 9]);
    assert.deepEqual(history.generated, [8, 9, 9]);
  });

  it('the sampler chooses from penalised logits', () => {
    const history = new TokenHistory();
    history.push(0);
    const logits = Float32Array.of(1, 0.8, 0);
    assert.equal(draws(params({ temperature: 0 }), logits, 1, history)[0], 0);
    assert.equal(draws(params({ temperature: 0, presencePenalty: 0.5 }), logits, 1, history)[0], 1);
    assert.equal(draws(params({ temperature: 0, repetitionPenalty: 1.5 }), logits, 1, history)[0], 1);
  });
});

describe('logprobs', () => {
  const logits = Float32Array.of(1, 2, 3, 0.5, -1);
  const expected = logSoftmax(logits);

  function sampleOnce(p: SamplingParams, history = new TokenHistory()): SampleResult {
    return new Sampler(p, logits.length).sample(logits, history);
  }

  it('reports the top N sorted, from the log-softmax of the raw logits', () => {
    const result = sampleOnce(params({ temperature: 0, logprobs: 3 }));
    assert.deepEqual(result.top?.map((t) => t.token), [2, 1, 0]);
    for (const t of result.top ?? []) assert.ok(Math.abs(t.logprob - expected[t.token]!) < 1e-6);
    assert.equal(result.token, 2);
    assert.ok(Math.abs(result.logprob! - expected[2]!) < 1e-6);
  });

  it('reports the chosen token even when it is not in the top N', () => {
    // Penalties steer greedy to id 3; logprobs still describe the raw distribution.
    const history = new TokenHistory();
    for (const id of [0, 1, 2]) history.push(id);
    const result = sampleOnce(params({ temperature: 0, logprobs: 1, presencePenalty: 2, frequencyPenalty: 2 }), history);
    assert.equal(result.token, 3);
    assert.ok(Math.abs(result.logprob! - expected[3]!) < 1e-6);
    assert.deepEqual(result.top?.map((t) => t.token), [2]);
    assert.ok(Math.abs(result.top![0]!.logprob - expected[2]!) < 1e-6);
  });

  it('ignores temperature and truncation', () => {
    const result = sampleOnce(params({ temperature: 0.1, topK: 2, logprobs: 5 }));
    assert.deepEqual(result.top?.map((t) => t.token), [2, 1, 0, 3, 4]);
    result.top!.forEach((t) => assert.ok(Math.abs(t.logprob - expected[t.token]!) < 1e-6));
  });

  it('are the same at temperature 1 with and without penalties (raw distribution either way)', () => {
    const history = new TokenHistory([4]);
    for (const p of [params({ logprobs: 5 }), params({ logprobs: 5, repetitionPenalty: 1.3 })]) {
      for (let seed = 0; seed < 20; seed++) {
        const result = sampleOnce({ ...p, seed }, history);
        assert.ok(Math.abs(result.logprob! - expected[result.token]!) < 1e-6);
        result.top!.forEach((t) => assert.ok(Math.abs(t.logprob - expected[t.token]!) < 1e-6));
      }
    }
  });

  it('logprobs 0 gives an empty top list and the chosen token\'s logprob; undefined gives neither (no softmax pass)', () => {
    const zero = sampleOnce(params({ temperature: 0, logprobs: 0 }));
    assert.deepEqual(zero.top, []);
    assert.ok(Math.abs(zero.logprob! - expected[2]!) < 1e-6);
    const none = sampleOnce(params({ temperature: 0 }));
    assert.equal(none.top, undefined);
    assert.equal(none.logprob, undefined);
    assert.equal(none.token, 2);
  });
});

describe('numerical safety', () => {
  it('never returns NaN: NaN logits count as -inf', () => {
    const result = new Sampler(params({ logprobs: 2 }), 4).sample(Float32Array.of(NaN, 1, NaN, 0), new TokenHistory());
    assert.ok(result.token === 1 || result.token === 3);
    assert.ok(Number.isFinite(result.logprob));
    assert.deepEqual(result.top?.map((t) => t.token), [1, 3]);
  });

  it('falls back to argmax when everything is -inf', () => {
    const logits = Float32Array.of(-Infinity, -Infinity, -Infinity);
    const result = new Sampler(params({ topP: 0.5, minP: 0.1, logprobs: 0 }), 3).sample(logits, new TokenHistory());
    assert.equal(result.token, 0);
    assert.ok(typeof result.logprob === 'number' && !Number.isNaN(result.logprob));
  });

  it('handles +inf logits and extreme temperatures', () => {
    const logits = Float32Array.of(0, Infinity, 1);
    assert.equal(draws(params({ temperature: 0.01 }), logits, 1)[0], 1);
    const low = draws(params({ temperature: 1e-4 }), Float32Array.of(1, 1.001, 0), 20);
    assert.deepEqual(low, Array(20).fill(1));
    assert.equal(draws(params({ temperature: 100 }), Float32Array.of(1, 2, 3), 100).length, 100);
  });

  it('rejects logits of the wrong length', () => {
    assert.throws(() => new Sampler(params(), 4).sample(new Float32Array(3), new TokenHistory()), RangeError);
  });
});

describe('selectTop', () => {
  it('returns the k best ids best-first, ties to the lower id', () => {
    const values = Float32Array.of(3, 9, 1, 9, 5, -Infinity, 7);
    const out = new Int32Array(7);
    assert.equal(selectTop(values, 4, out), 4);
    assert.deepEqual(Array.from(out.subarray(0, 4)), [1, 3, 6, 4]);
    assert.equal(selectTop(values, 10, out), 7);
    assert.deepEqual(Array.from(out), [1, 3, 6, 4, 0, 2, 5]);
  });

  it('agrees with a full sort on random data', () => {
    const values = randomLogits(5000, 21);
    const out = new Int32Array(5000);
    const sorted = Array.from(values.keys()).sort((a, b) => values[b]! - values[a]! || a - b);
    for (const k of [1, 7, 64, 5000]) {
      selectTop(values, k, out);
      assert.deepEqual(Array.from(out.subarray(0, k)), sorted.slice(0, k));
    }
  });
});

describe('large vocabulary', () => {
  it('samples 128k logits with every filter on, quickly', () => {
    const vocab = 128256;
    const logits = randomLogits(vocab, 8, 8);
    const history = new TokenHistory(Array.from({ length: 500 }, (_, i) => i * 7));
    const sampler = new Sampler(
      params({ topK: 50, topP: 0.9, minP: 0.05, presencePenalty: 0.3, frequencyPenalty: 0.2, repetitionPenalty: 1.1, logprobs: 5 }),
      vocab,
    );
    const start = performance.now();
    for (let i = 0; i < 50; i++) history.push(sampler.sample(logits, history).token);
    const perStep = (performance.now() - start) / 50;
    // Generous: a bound that catches an accidental full sort (tens of ms) without timing flakiness.
    assert.ok(perStep < 25, `${perStep.toFixed(2)} ms per step`);
  });
});

describe('validateSamplingParams', () => {
  const bad: [keyof SamplingParams, unknown][] = [
    ['temperature', -0.1],
    ['temperature', NaN],
    ['temperature', 101],
    ['topK', -2],
    ['topK', 1.5],
    ['topP', 0],
    ['topP', 1.01],
    ['topP', NaN],
    ['minP', -0.1],
    ['minP', 1.5],
    ['presencePenalty', 2.5],
    ['presencePenalty', -3],
    ['frequencyPenalty', -2.01],
    ['frequencyPenalty', NaN],
    ['repetitionPenalty', 0],
    ['repetitionPenalty', -1],
    ['repetitionPenalty', Infinity],
    ['logprobs', 21],
    ['logprobs', -1],
    ['logprobs', 2.5],
    ['seed', 1.5],
  ];
  for (const [field, value] of bad) {
    it(`rejects ${field} = ${value} naming the field`, () => {
      const p = { ...defaultSamplingParams(), [field]: value } as SamplingParams;
      assert.throws(
        () => validateSamplingParams(p),
        (e: unknown) => e instanceof SamplingParamsError && e.field === field && e.message.includes(field),
      );
    });
  }

  it('accepts the defaults and boundary values', () => {
    const ok = defaultSamplingParams({ temperature: 0, topK: -1, topP: 1, minP: 1, presencePenalty: -2, frequencyPenalty: 2, logprobs: 20, seed: 0 });
    assert.equal(validateSamplingParams(ok), ok);
    assert.doesNotThrow(() => validateSamplingParams(defaultSamplingParams()));
    assert.doesNotThrow(() => validateSamplingParams(defaultSamplingParams({ temperature: 100, logprobs: 0 })));
  });

  it('defaults are OpenAI’s: temperature 1, filters and penalties off, no logprobs', () => {
    assert.deepEqual(defaultSamplingParams(), {
      temperature: 1,
      topK: 0,
      topP: 1,
      minP: 0,
      presencePenalty: 0,
      frequencyPenalty: 0,
      repetitionPenalty: 1,
    });
    assert.equal(defaultSamplingParams({ topP: undefined }).topP, 1);
  });

  it('the sampler validates its params', () => {
    assert.throws(() => new Sampler(defaultSamplingParams({ topP: 2 }), 10), SamplingParamsError);
  });
});
