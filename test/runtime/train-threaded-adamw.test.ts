import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { describe, it } from 'node:test';
import type { OptimizedTensor } from '../../src/runtime/train/adamw.ts';
import { InThreadAdamW, type StepOptimizer } from '../../src/runtime/train/step-optimizer.ts';
import { partitionBySize, ThreadedAdamW } from '../../src/runtime/train/threaded-adamw.ts';
import { Xoshiro128ss } from '../../src/runtime/engine/rng.ts';

function randomArray(rng: Xoshiro128ss, n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.nextFloat() * 2 - 1) * scale);
}

/** Tensors of uneven sizes, some without decay, and per-step gradients for them. */
function problem(seed: number) {
  const rng = new Xoshiro128ss(seed);
  const sizes: [string, number, boolean][] = [['embed', 5000, true], ['gain0', 64, false], ['wq', 1200, true], ['wk', 300, true], ['down', 2600, true], ['gain1', 64, false]];
  const params = () => new Map<string, OptimizedTensor>(sizes.map(([name, n, decay]) => [name, { data: randomArray(new Xoshiro128ss(seed + n), n, 0.5), decay }]));
  const grads = Array.from({ length: 4 }, () => new Map(sizes.map(([name, n]) => [name, randomArray(rng, n, 3)])));
  return { params, grads };
}

/** Steps: norm, then update with a clip to 1 (every step here clips); returns the norms. */
async function run(opt: StepOptimizer, grads: Map<string, Float32Array>[], restoreAfter?: number): Promise<number[]> {
  const norms: number[] = [];
  for (const [k, g] of grads.entries()) {
    // The optimizer may take the gradient arrays (transfer): hand it copies so the next run sees the same values.
    const norm = await opt.gradientNorm(new Map([...g].map(([n, a]) => [n, a.slice()])));
    norms.push(norm);
    if (k === restoreAfter) await opt.restoreLastGood();
    else await opt.update(1e-2 * (k + 1), Math.min(1, 1 / norm));
  }
  return norms;
}

const snapshot = (params: Map<string, OptimizedTensor>) => new Map([...params].map(([n, p]) => [n, [...p.data]]));

describe('AdamW in worker threads', () => {
  it('gives the same norms and weights bit for bit as AdamW in the calling thread, over several steps with clipping and decay', async () => {
    const { params, grads } = problem(7);
    const a = params();
    const b = params();
    const normsA = await run(new InThreadAdamW(a, { weightDecay: 0.1 }), grads);
    for (const threads of [2, 3]) {
      const c = threads === 2 ? b : params();
      const opt = ThreadedAdamW.start(c, { weightDecay: 0.1 }, threads);
      try {
        assert.deepEqual(await run(opt, grads), normsA);
        assert.equal(opt.steps, 4);
      } finally {
        await opt.close();
      }
      assert.deepEqual(snapshot(c), snapshot(a), `${threads} threads`);
    }
    assert.notDeepEqual(snapshot(a), snapshot(params()), 'the weights moved');
  });

  it('restores the weights from before the last update after a step that is not applied, as in the calling thread', async () => {
    const { params, grads } = problem(11);
    const a = params();
    const b = params();
    await run(new InThreadAdamW(a, { weightDecay: 0 }), grads, 2);
    const opt = ThreadedAdamW.start(b, { weightDecay: 0 }, 2);
    try {
      await run(opt, grads.slice(0, 3), 2);
    } finally {
      await opt.close();
    }
    // a ran a 4th update after the restore; compare b with a run of two updates only.
    const c = params();
    const ref = new InThreadAdamW(c, { weightDecay: 0 });
    await run(ref, grads.slice(0, 2));
    await ref.gradientNorm(grads[2]!);
    await ref.restoreLastGood();
    assert.deepEqual(snapshot(b), snapshot(c));
  });

  it('restores the starting weights when no update was applied, with the weights still in the calling thread', async () => {
    const { params } = problem(3);
    const start = snapshot(params());
    const q = params();
    const opt = ThreadedAdamW.start(q, { weightDecay: 0 }, 2);
    try {
      // A fresh optimizer's last good weights are its starting ones.
      for (const t of q.values()) t.data.fill(9);
      await opt.restoreLastGood();
      assert.deepEqual(snapshot(q), start);
    } finally {
      await opt.close();
    }
  });

  it('fails the step with the thread\'s message when gradients are missing or a thread dies, and every later call too', async () => {
    const { params, grads } = problem(5);
    const opt = ThreadedAdamW.start(params(), { weightDecay: 0 }, 2);
    try {
      await assert.rejects(opt.gradientNorm(new Map([...grads[0]!].slice(1))), /no gradient for 'embed'/);
    } finally {
      await opt.close();
    }
    const dying = ThreadedAdamW.start(params(), { weightDecay: 0 }, 2, () => new Worker('process.exit(3)', { eval: true }));
    try {
      await assert.rejects(dying.gradientNorm(grads[0]!), /AdamW thread exited \(code 3\) during gradients/);
      await assert.rejects(dying.update(0.1, 1), /update without gradients|exited/);
    } finally {
      await dying.close();
    }
  });
});

describe('AdamW threads that fail between calls', () => {
  for (const [what, code, expected] of [
    ['exits', 'setTimeout(() => process.exit(4), 20)', /AdamW thread exited \(code 4\)/],
    ['throws', "setTimeout(() => { throw new Error('boom') }, 20)", /AdamW thread failed: boom/],
  ] as const) {
    it(`a thread that ${what} while the graph runs fails the next call at once, not never, and does not crash the process`, async () => {
      const { params, grads } = problem(9);
      // The thread keeps the process busy for a moment, then fails: no call is in flight.
      const opt = ThreadedAdamW.start(params(), { weightDecay: 0 }, 2, () => new Worker(`${code}; setInterval(() => {}, 1000)`, { eval: true }));
      try {
        await new Promise((r) => setTimeout(r, 300));
        await assert.rejects(opt.gradientNorm(grads[0]!), expected);
      } finally {
        await opt.close();
      }
    });
  }
});

describe('partitionBySize', () => {
  it('puts the largest tensors first on the least loaded thread and keeps each list in input order', () => {
    const parts = partitionBySize([['a', 10], ['b', 60], ['c', 30], ['d', 25], ['e', 5]], 2);
    assert.deepEqual(parts, [['b', 'e'], ['a', 'c', 'd']]);
  });
  it('uses no more lists than tensors', () => assert.deepEqual(partitionBySize([['a', 1]], 4), [['a']]));
});
