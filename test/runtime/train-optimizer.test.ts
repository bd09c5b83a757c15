import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdamW } from '../../src/runtime/train/adamw.ts';
import { BatchSampler } from '../../src/runtime/train/batch-sampler.ts';
import { clipScale, normOfSums, sumOfSquares } from '../../src/runtime/train/grad-clip.ts';
import { learningRateAt } from '../../src/runtime/train/lr-schedule.ts';

describe('AdamW', () => {
  it('matches a float64 transcription of the update rule (β 0.9/0.95, decoupled decay on matrices only) over 3 steps', () => {
    const w = Float32Array.of(0.5, -1, 2);
    const gain = Float32Array.of(1, 1);
    const opt = new AdamW(
      new Map([
        ['w', { data: w, decay: true }],
        ['gain', { data: gain, decay: false }],
      ]),
      { weightDecay: 0.1 },
    );
    const grads = [Float32Array.of(0.2, -0.4, 1), Float32Array.of(-0.1, 0.3, 0.5), Float32Array.of(0.05, 0.05, -2)];
    const ref = [0.5, -1, 2];
    const m = [0, 0, 0];
    const v = [0, 0, 0];
    const lr = 0.01;
    grads.forEach((g, t) => {
      opt.step(new Map([['w', g], ['gain', Float32Array.of(1, -1)]]), lr);
      for (let i = 0; i < 3; i++) {
        m[i] = 0.9 * m[i]! + 0.1 * g[i]!;
        v[i] = 0.95 * v[i]! + 0.05 * g[i]! * g[i]!;
        const mh = m[i]! / (1 - 0.9 ** (t + 1));
        const vh = v[i]! / (1 - 0.95 ** (t + 1));
        ref[i] = Math.fround(ref[i]! - lr * (mh / (Math.sqrt(vh) + 1e-8)) - lr * 0.1 * ref[i]!);
      }
    });
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(w[i]! - ref[i]!) < 1e-6, `w[${i}] ${w[i]} vs ${ref[i]}`);
    // No decay on the gain: three steps of ±lr·(bias-corrected unit step) from 1.
    assert.ok(Math.abs(gain[0]! - (1 - 3 * lr)) < 1e-6 && Math.abs(gain[1]! - (1 + 3 * lr)) < 1e-6, `gain ${gain}`);
  });

  it('scales gradients by the clip factor before the moments', () => {
    const a = Float32Array.of(1);
    const b = Float32Array.of(1);
    new AdamW(new Map([['p', { data: a, decay: false }]]), { weightDecay: 0 }).step(new Map([['p', Float32Array.of(4)]]), 0.1, 0.25);
    new AdamW(new Map([['p', { data: b, decay: false }]]), { weightDecay: 0 }).step(new Map([['p', Float32Array.of(1)]]), 0.1);
    assert.equal(a[0], b[0]);
  });

  it('writes the weights it read into `previous` in the same pass, and updates as without it', () => {
    const a = Float32Array.of(1, -2, 3);
    const b = Float32Array.from(a);
    const previous = new Float32Array(3);
    const g = Float32Array.of(0.5, -1, 2);
    new AdamW(new Map([['p', { data: a, decay: true }]]), { weightDecay: 0.1 }).step(new Map([['p', g]]), 0.1, 0.5, new Map([['p', previous]]));
    new AdamW(new Map([['p', { data: b, decay: true }]]), { weightDecay: 0.1 }).step(new Map([['p', g]]), 0.1, 0.5);
    assert.deepEqual([...previous], [1, -2, 3]);
    assert.deepEqual([...a], [...b]);
    assert.notDeepEqual([...a], [1, -2, 3]);
  });
});

describe('learning-rate schedule', () => {
  const s = { lr: 1, steps: 110, warmup: 10, minRatio: 0.1 };
  it('warms up linearly to the peak at the last warm-up step', () => {
    assert.equal(learningRateAt(0, s), 0.1);
    assert.equal(learningRateAt(4, s), 0.5);
    assert.equal(learningRateAt(9, s), 1);
  });
  it('decays by a cosine from the peak to minRatio·lr at the last step, monotonically', () => {
    assert.equal(learningRateAt(10, s), 1);
    assert.ok(Math.abs(learningRateAt(109, s) - 0.1) < 1e-12);
    assert.ok(Math.abs(learningRateAt(10 + 49.5, s) - 0.55) < 1e-3);
    for (let t = 11; t < 110; t++) assert.ok(learningRateAt(t, s) <= learningRateAt(t - 1, s));
  });
  it('with no warm-up starts at the peak', () => assert.equal(learningRateAt(0, { lr: 3, steps: 5, warmup: 0 }), 3));
});

describe('global gradient-norm clipping', () => {
  const clipFactor = (grads: Float32Array[], maxNorm: number) => {
    const norm = normOfSums(grads.map(sumOfSquares));
    return { norm, scale: clipScale(norm, maxNorm) };
  };
  it('measures the norm over all tensors together and scales down to the limit', () => {
    const { norm, scale } = clipFactor([Float32Array.of(3), Float32Array.of(0, 4)], 1);
    assert.equal(norm, 5);
    assert.equal(scale, 0.2);
  });
  it('leaves gradients under the limit, or with clipping off (0), unscaled', () => {
    assert.equal(clipFactor([Float32Array.of(0.3, 0.4)], 1).scale, 1);
    assert.equal(clipFactor([Float32Array.of(30, 40)], 0).scale, 1);
  });
  it('reports a non-finite norm', () => assert.ok(Number.isNaN(clipFactor([Float32Array.of(NaN)], 1).norm)));
});

describe('batch sampler', () => {
  const windows = [Int32Array.of(1, 2, 3, 4, 5), Int32Array.of(1, 6, 7), Int32Array.of(1, 8, 9, 10, 11, 12, 13)];
  it('pairs each position with the next token, pads short windows with weight 0 and cuts long ones', () => {
    const s = new BatchSampler(windows, 3, 4, 1);
    const b = s.next();
    assert.deepEqual([...b.windows].sort(), [0, 1, 2]);
    const row = b.windows.indexOf(1);
    assert.deepEqual([...b.ids.subarray(row * 4, row * 4 + 4)].map(Number), [1, 6, 0, 0]);
    assert.deepEqual([...b.targets.subarray(row * 4, row * 4 + 4)].map(Number), [6, 7, 0, 0]);
    assert.deepEqual([...b.weights.subarray(row * 4, row * 4 + 4)], [1, 1, 0, 0]);
    const long = b.windows.indexOf(2);
    assert.deepEqual([...b.targets.subarray(long * 4, long * 4 + 4)].map(Number), [8, 9, 10, 11]);
    assert.equal(b.tokens, 4 + 2 + 4);
  });
  it('visits every window once per epoch, in an order fixed by the seed', () => {
    const order = (seed: number) => {
      const s = new BatchSampler(windows, 1, 4, seed);
      return Array.from({ length: 6 }, () => s.next().windows[0]!);
    };
    const a = order(7);
    assert.deepEqual(a, order(7));
    assert.deepEqual([...a.slice(0, 3)].sort(), [0, 1, 2]);
    assert.deepEqual([...a.slice(3)].sort(), [0, 1, 2]);
  });
});
