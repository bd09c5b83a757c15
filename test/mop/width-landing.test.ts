import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { landOnTarget } from '../../src/mop/width-landing.ts';
import type { Unit } from '../../src/mop/width-units.ts';

/** A unit of `cost`; `score` ranks it (lower goes first). Costs here are exact: removedCost sums them. */
const unit = (kind: Unit['kind'], index: number, cost: number, score: number): Unit => ({ kind, layer: 0, indices: [index], cost, structureCost: cost, score });
const sum = (set: ReadonlySet<Unit>) => [...set].reduce((a, u) => a + u.cost, 0);

describe('landing the finishing width step on the target', () => {
  const fine = Array.from({ length: 20 }, (_, i) => unit('neuron', i, 10, 1 + i / 100));
  const coarse = unit('kv', 0, 100, 0.5);

  it('a set already within the tolerance is kept as it is', () => {
    const taken = new Set(fine.slice(0, 5));
    assert.equal(landOnTarget([...fine, coarse], taken, { remaining: 52, tolerance: 5 }, sum, 1), taken);
  });

  it('past the target, the coarse unit goes back and fine units fill in', () => {
    const taken = new Set([coarse]);
    const landed = landOnTarget([...fine, coarse], taken, { remaining: 60, tolerance: 5 }, sum, 1);
    assert.ok(!landed.has(coarse));
    assert.ok(Math.abs(sum(landed) - 60) <= 5, `${sum(landed)}`);
    // The least important fine units are the ones taken.
    assert.deepEqual([...landed].map((u) => u.indices[0]!).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5]);
  });

  it('short of the target with only a coarse unit left, it swaps: the coarse unit in, the most important fine units back', () => {
    const taken = new Set(fine);
    // All 20 fine units (200) leave 50 to go; only the coarse unit (100) is left, and it would land 50 past.
    const landed = landOnTarget([...fine, coarse], taken, { remaining: 250, tolerance: 5 }, sum, 1);
    assert.ok(landed.has(coarse));
    assert.equal(sum(landed), 250);
    assert.deepEqual(fine.filter((u) => !landed.has(u)).map((u) => u.indices[0]), [15, 16, 17, 18, 19]);
  });

  it('gives back the most important fine units after a swap, and never a chunk smaller than the width multiple', () => {
    const chunks = [unit('neuron', 0, 6, 1), ...Array.from({ length: 10 }, (_, i) => ({ ...unit('neuron', 1 + 4 * i, 40, 1.1 + i / 10), indices: [1, 2, 3, 4].map((k) => 4 * i + k) }))];
    chunks.forEach((c) => (c.structureCost = 10));
    const big = unit('kv', 0, 300, 0.5);
    const taken = new Set(chunks);
    // Taken: 406, 214 short of 620; the 300 unit makes 706, then the two most important 40-chunks go back (626).
    const landed = landOnTarget([...chunks, big], taken, { remaining: 620, tolerance: 10 }, sum, 4);
    assert.ok(landed.has(big) && landed.has(chunks[0]!));
    assert.equal(sum(landed), 626);
    assert.deepEqual(chunks.filter((u) => !landed.has(u)), [chunks[9], chunks[10]]);
  });

  it('where nothing lands, the greedy set comes back unchanged (the prune then reports the target out of reach)', () => {
    const taken = new Set([fine[0]!]);
    assert.equal(landOnTarget([fine[0]!, coarse], taken, { remaining: 55, tolerance: 5 }, sum, 1), taken);
  });
});
