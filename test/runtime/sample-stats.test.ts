import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mean, median, quantile, sortedAscending, sum } from '../../src/runtime/stats/sample-stats.ts';

describe('sample statistics (src/runtime/stats, used by the engine, the load generator and every script)', () => {
  it('median of an odd-length sample is its middle value, whatever the order', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([5]), 5);
    assert.equal(median([9, 7, 1, 3, 5]), 5);
  });

  it('median of an even-length sample is the mean of the two middle values', () => {
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([10, 20]), 15);
    assert.equal(median([1, 1, 9, 9]), 5);
  });

  it('median, quantile and mean of an empty sample are NaN, and sum is 0', () => {
    assert.ok(Number.isNaN(median([])));
    assert.ok(Number.isNaN(quantile([], 0.9)));
    assert.ok(Number.isNaN(mean([])));
    assert.equal(sum([]), 0);
  });

  it('quantile interpolates linearly between the nearest ranks and clamps q to [0, 1]', () => {
    const xs = [40, 10, 30, 20];
    assert.equal(quantile(xs, 0), 10);
    assert.equal(quantile(xs, 1), 40);
    assert.equal(quantile(xs, 0.5), median(xs));
    assert.ok(Math.abs(quantile(xs, 0.9) - 37) < 1e-9);
    assert.equal(quantile(xs, -1), 10);
    assert.equal(quantile(xs, 2), 40);
  });

  it('leaves its input as it was: the sample is sorted in a copy', () => {
    const xs = [3, 1, 2, 10];
    median(xs);
    quantile(xs, 0.25);
    assert.deepEqual(xs, [3, 1, 2, 10]);
    assert.deepEqual(sortedAscending(xs), [1, 2, 3, 10], 'numerically, not as strings');
  });

  it('mean and sum', () => {
    assert.equal(sum([1, 2, 3.5]), 6.5);
    assert.equal(mean([1, 2, 3, 6]), 3);
  });
});
