import * as ort from 'onnxruntime-node';
import type { KvCacheLayout } from '../onnx/decoder-graph.ts';

/** The smallest capacity the cache starts with (tokens per sequence). */
const INITIAL_CAPACITY = 128;

/**
 * The KV cache: for each attention layer one key and one value buffer of
 * [maxBatch, kvHeads, capacity, headDim] floats. A sequence owns one batch slot; because the slot is
 * the outermost dimension, slots [0, n) and any single slot are contiguous views, which
 * GroupQueryAttention reads and updates in place.
 *
 * Why the capacity grows instead of being maxContext from the start: onnxruntime-node returns every
 * fetched output as a fresh JavaScript copy, the cache's present_* outputs included, so each run
 * costs one copy of the bound cache views. Keeping capacity within 2× of the longest live
 * sequence makes that copy proportional to the context in use (the same order as attention's own
 * reads), not to the model's maximum context. Growth re-lays the buffers out (doubling, so
 * amortised O(1) per token); an idle or much shorter batch lets it shrink back.
 */
export class KvCache {
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  private slotSizes: number[] = [];
  /** Positions per sequence the buffers hold now (≤ maxContext). */
  capacity = 0;
  /** Tokens cached per slot. */
  readonly lengths: Int32Array;

  constructor(
    readonly layout: readonly KvCacheLayout[],
    readonly maxBatch: number,
    readonly maxContext: number,
  ) {
    this.lengths = new Int32Array(maxBatch);
    this.resize(Math.min(INITIAL_CAPACITY, maxContext));
  }

  /**
   * Feeds and fetches for rows [first, first + count), with room for `needed` positions: each
   * layer's past_* input and present_* output are the same view of the same memory, so the update
   * happens in place.
   */
  bind(first: number, count: number, needed: number): { feeds: Record<string, ort.Tensor>; fetches: Record<string, ort.Tensor> } {
    this.fit(needed);
    const feeds: Record<string, ort.Tensor> = {};
    const fetches: Record<string, ort.Tensor> = {};
    this.layout.forEach((l, i) => {
      const n = this.slotSizes[i]!;
      const dims = [count, l.kvHeads, this.capacity, l.cacheHeadDim];
      const k = new ort.Tensor('float32', this.keys[i]!.subarray(first * n, (first + count) * n), dims);
      const v = new ort.Tensor('float32', this.values[i]!.subarray(first * n, (first + count) * n), dims);
      feeds[l.pastKey] = k;
      feeds[l.pastValue] = v;
      fetches[l.presentKey] = k;
      fetches[l.presentValue] = v;
    });
    return { feeds, fetches };
  }

  /** Grow to hold `needed` positions, or shrink when the live sequences need a quarter or less. */
  private fit(needed: number): void {
    if (needed > this.maxContext) throw new RangeError(`${needed} positions exceed the cache's context of ${this.maxContext}`);
    let live = needed;
    for (const len of this.lengths) live = Math.max(live, len);
    if (live > this.capacity) this.resize(Math.min(this.maxContext, Math.max(this.capacity * 2, nextPowerOfTwo(live))));
    else if (this.capacity > INITIAL_CAPACITY && live * 4 <= this.capacity) this.resize(Math.max(INITIAL_CAPACITY, nextPowerOfTwo(live) * 2));
  }

  /** Re-lay every buffer out for `capacity` positions, keeping each slot's cached prefix. */
  private resize(capacity: number): void {
    const old = { keys: this.keys, values: this.values, capacity: this.capacity };
    this.slotSizes = this.layout.map((l) => l.kvHeads * capacity * l.cacheHeadDim);
    const relayout = (src: Float32Array | undefined, l: KvCacheLayout, i: number): Float32Array => {
      const dst = new Float32Array(this.slotSizes[i]! * this.maxBatch);
      if (!src) return dst;
      const D = l.cacheHeadDim;
      for (let s = 0; s < this.maxBatch; s++) {
        const keep = Math.min(this.lengths[s]!, capacity, old.capacity) * D;
        if (keep === 0) continue;
        for (let h = 0; h < l.kvHeads; h++) {
          const from = (s * l.kvHeads + h) * old.capacity * D;
          dst.set(src.subarray(from, from + keep), (s * l.kvHeads + h) * capacity * D);
        }
      }
      return dst;
    };
    this.keys = this.layout.map((l, i) => relayout(old.keys[i], l, i));
    this.values = this.layout.map((l, i) => relayout(old.values[i], l, i));
    this.capacity = capacity;
  }
}

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}
