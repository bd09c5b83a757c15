import * as ort from 'onnxruntime-node';
import type { KvCacheLayout } from '../onnx/decoder-graph.ts';
import type { FloatType } from '../onnx/onnx-model.ts';
import { INITIAL_CAPACITY, type KvBinding, type KvStore, nextCapacity } from './kv-store.ts';

/** float32 elements, or float16 bit patterns (onnxruntime-node's representation of float16). */
type KvArray = Float32Array | Uint16Array;

/** Slot-less cache buffers for one batched run of fresh prompts (KvCache.scratch). */
export interface ScratchKv {
  feeds: Record<string, ort.Tensor>;
  fetches: Record<string, ort.Tensor>;
  keys: KvArray[];
  values: KvArray[];
  rows: number;
  positions: number;
}

/**
 * The host-memory KV cache (CPU, and the CUDA provider, whose inputs cross host memory anyway):
 * for each attention layer one key and one value buffer of
 * [maxBatch, kvHeads, capacity, headDim] floats. A sequence owns one batch slot; because the slot is
 * the outermost dimension, slots [0, n) and any single slot are contiguous views, which
 * GroupQueryAttention reads and updates in place.
 *
 * Why the capacity grows instead of being maxContext from the start: onnxruntime-node returns every
 * fetched output as a fresh JavaScript copy, the cache's present_* outputs included, so each run
 * costs one copy of the bound cache views. Keeping capacity within 128 positions of the longest
 * live sequence makes that copy proportional to the context in use (the same order as attention's
 * own reads), not to the model's maximum context. Growth re-lays the buffers out (at most once per
 * 128 tokens); an idle or much shorter batch lets it shrink back (kv-store.ts nextCapacity).
 */
export class KvCache implements KvStore {
  private keys: KvArray[] = [];
  private values: KvArray[] = [];
  private slotSizes: number[] = [];
  /** Positions per sequence the buffers hold now (≤ maxContext). */
  capacity = 0;
  /** Tokens cached per slot. */
  readonly lengths: Int32Array;

  constructor(
    readonly layout: readonly KvCacheLayout[],
    readonly maxBatch: number,
    readonly maxContext: number,
    readonly dtype: FloatType = 'float32',
  ) {
    this.lengths = new Int32Array(maxBatch);
    this.resize(Math.min(INITIAL_CAPACITY, maxContext));
  }

  bindSlot(slot: number, needed: number): Promise<KvBinding> {
    return Promise.resolve(this.views(slot, 1, needed));
  }

  decodeRows(count: number): number {
    return count;
  }

  bindDecode(count: number, needed: number): Promise<KvBinding> {
    return Promise.resolve(this.views(0, count, needed));
  }

  /** The run wrote the bound views in place: nothing to take over. */
  commit(): Promise<void> {
    return Promise.resolve();
  }

  release(): void {
    this.keys = [];
    this.values = [];
  }

  /**
   * Feeds and fetches for rows [first, first + count), with room for `needed` positions: each
   * layer's past_* input and present_* output are the same view of the same memory, so the update
   * happens in place.
   */
  views(first: number, count: number, needed: number): { feeds: Record<string, ort.Tensor>; fetches: Record<string, ort.Tensor> } {
    this.fit(needed);
    const feeds: Record<string, ort.Tensor> = {};
    const fetches: Record<string, ort.Tensor> = {};
    this.layout.forEach((l, i) => {
      const n = this.slotSizes[i]!;
      const dims = [count, l.kvHeads, this.capacity, l.cacheHeadDim];
      const k = new ort.Tensor(this.dtype, this.keys[i]!.subarray(first * n, (first + count) * n), dims);
      const v = new ort.Tensor(this.dtype, this.values[i]!.subarray(first * n, (first + count) * n), dims);
      feeds[l.pastKey] = k;
      feeds[l.pastValue] = v;
      fetches[l.presentKey] = k;
      fetches[l.presentValue] = v;
    });
    return { feeds, fetches };
  }

  /**
   * Cache tensors for a run over `rows` fresh sequences of at most `positions` tokens that belongs
   * to no slot (a batched prefill of new prompts): zeroed buffers [rows, kvHeads, positions,
   * cacheHeadDim], each layer's past_* and present_* the same memory. Binding scratch instead of
   * slot views means the run cannot touch any other slot's cache; `adopt` copies each row's
   * prefix into its slot afterwards.
   */
  scratch(rows: number, positions: number): ScratchKv {
    const feeds: Record<string, ort.Tensor> = {};
    const fetches: Record<string, ort.Tensor> = {};
    const keys: KvArray[] = [];
    const values: KvArray[] = [];
    for (const l of this.layout) {
      const size = rows * l.kvHeads * positions * l.cacheHeadDim;
      const k = this.dtype === 'float16' ? new Uint16Array(size) : new Float32Array(size);
      const v = this.dtype === 'float16' ? new Uint16Array(size) : new Float32Array(size);
      const dims = [rows, l.kvHeads, positions, l.cacheHeadDim];
      const kt = new ort.Tensor(this.dtype, k, dims);
      const vt = new ort.Tensor(this.dtype, v, dims);
      feeds[l.pastKey] = kt;
      feeds[l.pastValue] = vt;
      fetches[l.presentKey] = kt;
      fetches[l.presentValue] = vt;
      keys.push(k);
      values.push(v);
    }
    return { feeds, fetches, keys, values, rows, positions };
  }

  /**
   * Take over, for each placement, the first `count` positions of scratch row `row` as the whole
   * cached sequence of `slot` (whose length must be 0). Only those slots' memory is written.
   */
  adopt(scratch: ScratchKv, placements: readonly { row: number; slot: number; count: number }[]): void {
    for (const p of placements) {
      if (this.lengths[p.slot] !== 0) throw new RangeError(`slot ${p.slot} already holds ${this.lengths[p.slot]} tokens`);
      if (p.count > scratch.positions) throw new RangeError(`${p.count} positions exceed the scratch rows of ${scratch.positions}`);
    }
    this.fit(Math.max(0, ...placements.map((p) => p.count)));
    this.layout.forEach((l, i) => {
      const D = l.cacheHeadDim;
      const n = this.slotSizes[i]!;
      for (const p of placements) {
        for (let h = 0; h < l.kvHeads; h++) {
          const from = (p.row * l.kvHeads + h) * scratch.positions * D;
          const to = p.slot * n + h * this.capacity * D;
          this.keys[i]!.set(scratch.keys[i]!.subarray(from, from + p.count * D), to);
          this.values[i]!.set(scratch.values[i]!.subarray(from, from + p.count * D), to);
        }
      }
    });
    for (const p of placements) this.lengths[p.slot] = p.count;
  }

  /** Grow to hold `needed` positions, or shrink when the live sequences need a quarter or less. */
  private fit(needed: number): void {
    if (needed > this.maxContext) throw new RangeError(`${needed} positions exceed the cache's context of ${this.maxContext}`);
    const next = nextCapacity(this.capacity, needed, this.lengths, this.maxContext);
    if (next !== this.capacity) this.resize(next);
  }

  /** Re-lay every buffer out for `capacity` positions, keeping each slot's cached prefix. */
  private resize(capacity: number): void {
    const old = { keys: this.keys, values: this.values, capacity: this.capacity };
    this.slotSizes = this.layout.map((l) => l.kvHeads * capacity * l.cacheHeadDim);
    const relayout = (src: KvArray | undefined, l: KvCacheLayout, i: number): KvArray => {
      const size = this.slotSizes[i]! * this.maxBatch;
      const dst = this.dtype === 'float16' ? new Uint16Array(size) : new Float32Array(size);
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
