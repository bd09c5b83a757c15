import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PrefixCache, prefixBlockHashes } from '../../../src/runtime/engine/prefix-cache.ts';

/** A block of `bytes` bytes filled with `fill`. */
const block = (bytes: number, fill: number) => new Float32Array(bytes / 4).fill(fill);
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

describe('prefix cache block hashes', () => {
  it('hash whole blocks chained over the prefix: a block equal in content but after another prefix hashes differently', () => {
    const a = prefixBlockHashes([...range(4), ...range(4, 100)], 2, 4);
    const b = prefixBlockHashes([...range(4, 50), ...range(4, 100)], 2, 4);
    assert.equal(a.length, 2);
    assert.notEqual(a[1], b[1]);
    assert.deepEqual(prefixBlockHashes([...range(4), 7, 7, 7, 7, 9], 1, 4), a.slice(0, 1));
  });

  it('refuses more blocks than the tokens fill', () => {
    assert.throws(() => prefixBlockHashes(range(7), 2, 4), RangeError);
  });
});

describe('prefix cache LRU', () => {
  it('matches the longest cached run from the first block, and counts queried and hit tokens', () => {
    const cache = new PrefixCache(1 << 20);
    const hashes = prefixBlockHashes(range(12), 3, 4);
    cache.put(hashes[0]!, block(16, 0));
    cache.put(hashes[2]!, block(16, 2));
    const found = cache.match(hashes, 12, 4);
    assert.deepEqual(found.map((b) => b.hash), hashes.slice(0, 1));
    assert.deepEqual(cache.stats(), { queryTokens: 12, hitTokens: 4, blocks: 2, bytes: 32, capacityBytes: 1 << 20 });
  });

  it('evicts the least recently used blocks by bytes, never more than needed', () => {
    const cache = new PrefixCache(64);
    for (let i = 0; i < 4; i++) assert.equal(cache.put(`h${i}`, block(16, i)), true);
    cache.touch(['h0']);
    cache.put('h4', block(32, 4));
    // h1 and h2 were the least recently used; h0 was touched.
    assert.deepEqual(['h0', 'h1', 'h2', 'h3', 'h4'].map((h) => cache.has(h)), [true, false, false, true, true]);
    assert.equal(cache.stats().bytes, 64);
  });

  it('evicts the end of a chain before its start, so no cached block is unreachable', () => {
    const cache = new PrefixCache(48);
    const chain = prefixBlockHashes(range(12), 3, 4);
    chain.forEach((h, k) => cache.put(h, block(16, k)));
    cache.match(chain, 12, 4);
    cache.put('other', block(16, 9));
    assert.deepEqual(chain.map((h) => cache.has(h)), [true, true, false]);
    assert.equal(cache.match(chain, 12, 4).length, 2);
  });

  it('does not store a block larger than the whole budget, and stores nothing with a budget of 0', () => {
    assert.equal(new PrefixCache(8).put('big', block(16, 1)), false);
    const off = new PrefixCache(0);
    assert.equal(off.put('a', block(4, 1)), false);
    assert.equal(off.stats().blocks, 0);
  });

  it('leaves blocks handed out intact when they are evicted or their hash is stored again', () => {
    const cache = new PrefixCache(32);
    cache.put('a', block(16, 1));
    const [held] = cache.match(['a'], 4, 4);
    assert.equal(cache.put('a', block(16, 7)), true);
    assert.equal(cache.match(['a'], 4, 4)[0]!.data, held!.data);
    cache.put('b', block(16, 2));
    cache.put('c', block(16, 3));
    assert.equal(cache.has('a'), false);
    assert.deepEqual([...held!.data], [1, 1, 1, 1]);
  });

  it('clear drops every block and keeps the totals', () => {
    const cache = new PrefixCache(64);
    cache.put('a', block(16, 1));
    cache.match(['a'], 4, 4);
    cache.clear();
    assert.deepEqual(cache.stats(), { queryTokens: 4, hitTokens: 4, blocks: 0, bytes: 0, capacityBytes: 64 });
  });

  it('refuses a negative or non-numeric budget', () => {
    assert.throws(() => new PrefixCache(-1), RangeError);
    assert.throws(() => new PrefixCache(Number.NaN), RangeError);
  });
});
