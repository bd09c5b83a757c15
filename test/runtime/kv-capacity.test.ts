import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { INITIAL_CAPACITY, nextCapacity } from '../../src/runtime/engine/kv-store.ts';

const lengths = (...l: number[]) => Int32Array.from(l);

describe('KV cache capacity', () => {
  it('grows to the longest live sequence rounded up to whole 128-position granules, not to the next power of two', () => {
    assert.equal(INITIAL_CAPACITY, 128);
    assert.equal(nextCapacity(128, 129, lengths(128, 3), 4096), 256);
    assert.equal(nextCapacity(512, 520, lengths(500, 0), 4096), 640); // doubling gave 1,024
    assert.equal(nextCapacity(640, 1, lengths(641), 4096), 768);
    assert.equal(nextCapacity(0, 5, lengths(0), 4096), 128);
  });

  it('keeps its capacity while the live sequences fit and use more than a quarter of it', () => {
    assert.equal(nextCapacity(640, 1, lengths(600, 7), 4096), 640);
    assert.equal(nextCapacity(640, 1, lengths(161), 4096), 640);
  });

  it('shrinks back when a quarter or less is used, to the live length rounded up, never below 128', () => {
    assert.equal(nextCapacity(640, 1, lengths(160), 4096), 256);
    assert.equal(nextCapacity(1024, 1, lengths(30, 2), 4096), 128);
    assert.equal(nextCapacity(128, 1, lengths(0), 4096), 128);
  });

  it('never goes past the context', () => {
    assert.equal(nextCapacity(256, 300, lengths(299), 300), 300);
    assert.equal(nextCapacity(128, 200, lengths(0), 200), 200);
  });
});
