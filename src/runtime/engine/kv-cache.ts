import * as ort from 'onnxruntime-node';
import type { CacheOutputs, KvCacheLayout } from '../onnx/decoder-attention.ts';
import type { FloatType } from '../onnx/onnx-model.ts';
import { INITIAL_CAPACITY, type KvBinding, type KvStore, nextCapacity, type SlotKv } from './kv-store.ts';

/** float32 elements, or float16 bit patterns (onnxruntime-node's representation of float16). */
type KvArray = Float32Array | Uint16Array;

/** Slot-less cache buffers for one batched run of fresh prompts (KvCache.scratch). */
export interface ScratchKv {
  feeds: Record<string, ort.Tensor>;
  fetches: Record<string, ort.Tensor | null>;
  /** The buffers the run writes ('present'); empty with 'new', whose rows come from the run's outputs. */
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
 * GroupQueryAttention reads (and, with 'present', updates in place).
 *
 * How a run's new positions get here depends on the graph's cacheOutputs:
 * - 'new' (CPU): the graph returns only the positions the run added (new_*), and commit writes them
 *   into the buffers. onnxruntime-node copies every fetched output into a fresh JavaScript array,
 *   so this keeps the per-run copy to the new positions; the buffers are read-only to the run.
 * - 'present' (CUDA provider): present_* are fetched into the very past_* views, so GQA writes the
 *   new positions in place, and the binding then copies the whole bound cache back once per run.
 *
 * Why the capacity grows instead of being maxContext from the start: every run reads (and, with
 * 'new', GQA copies inside ONNX Runtime) the bound views, so keeping capacity within 128 positions
 * of the longest live sequence makes that work proportional to the context in use, not to the
 * model's maximum context. Growth re-lays the buffers out (at most once per 128 tokens); an idle or
 * much shorter batch lets it shrink back (kv-store.ts nextCapacity).
 */
export class KvCache implements KvStore, SlotKv {
  private keys: KvArray[] = [];
  private values: KvArray[] = [];
  private slotSizes: number[] = [];
  /** Positions per sequence the buffers hold now (≤ maxContext). */
  capacity = 0;
  /** Tokens cached per slot. */
  readonly lengths: Int32Array;
  /** The first slot of the last binding ('new' outputs land in its rows). */
  private boundFirst: number | undefined;

  constructor(
    readonly layout: readonly KvCacheLayout[],
    readonly maxBatch: number,
    readonly maxContext: number,
    readonly dtype: FloatType = 'float32',
    readonly cacheOutputs: CacheOutputs = 'present',
  ) {
    this.lengths = new Int32Array(maxBatch);
    this.resize(Math.min(INITIAL_CAPACITY, maxContext));
  }

  bindSlot(slot: number, needed: number): Promise<KvBinding> {
    this.boundFirst = slot;
    return Promise.resolve(this.views(slot, 1, needed));
  }

  decodeRows(count: number): number {
    return count;
  }

  bindDecode(count: number, needed: number): Promise<KvBinding> {
    this.boundFirst = 0;
    return Promise.resolve(this.views(0, count, needed));
  }

  /**
   * 'present': the run wrote the bound views in place, nothing to take over. 'new': write each
   * row's new positions (row r ends at seqlensK[r] + 1; see DecoderGraphOptions.cacheOutputs) into
   * the slots the last binding covered.
   */
  async commit(outputs: ort.InferenceSession.ReturnType, seqlensK: Int32Array): Promise<void> {
    if (this.cacheOutputs === 'present') return;
    const first = this.boundFirst;
    this.boundFirst = undefined;
    if (first === undefined) throw new Error('commit without a binding');
    this.writeNew(outputs, seqlensK, first);
  }

  /** Copy run rows' new positions (new_* outputs) into slots first, first + 1, …. */
  private writeNew(outputs: ort.InferenceSession.ReturnType, seqlensK: Int32Array, first: number, slots?: readonly number[]): void {
    this.layout.forEach((l, i) => {
      const key = outputs[l.newKey];
      const value = outputs[l.newValue];
      if (!key || !value) throw new Error(`the run returned no ${l.newKey} / ${l.newValue}: was the graph built with cacheOutputs 'new'?`);
      const [rows, , S] = key.dims as [number, number, number, number];
      const D = l.cacheHeadDim;
      const n = this.slotSizes[i]!;
      const keys = key.data as KvArray;
      const values = value.data as KvArray;
      for (let r = 0; r < rows; r++) {
        const slot = slots ? slots[r] : first + r;
        if (slot === undefined) continue;
        const end = seqlensK[r]! + 1;
        const start = Math.max(0, end - S);
        if (end > this.capacity) throw new RangeError(`position ${end - 1} is outside the cache's ${this.capacity} positions`);
        for (let h = 0; h < l.kvHeads; h++) {
          const from = (r * l.kvHeads + h) * S * D;
          const to = slot * n + (h * this.capacity + start) * D;
          this.keys[i]!.set(keys.subarray(from, from + (end - start) * D), to);
          this.values[i]!.set(values.subarray(from, from + (end - start) * D), to);
        }
      }
    });
  }

  release(): void {
    this.keys = [];
    this.values = [];
  }

  /**
   * Feeds and fetches for rows [first, first + count), with room for `needed` positions. 'present':
   * each layer's past_* input and present_* output are the same view of the same memory, so the
   * update happens in place; 'new': the new_* outputs are left to the run, and commit copies them in.
   */
  views(first: number, count: number, needed: number): KvBinding {
    this.fit(needed);
    const feeds: Record<string, ort.Tensor> = {};
    const fetches: Record<string, ort.Tensor | null> = {};
    this.layout.forEach((l, i) => {
      const n = this.slotSizes[i]!;
      const dims = [count, l.kvHeads, this.capacity, l.cacheHeadDim];
      const k = new ort.Tensor(this.dtype, this.keys[i]!.subarray(first * n, (first + count) * n), dims);
      const v = new ort.Tensor(this.dtype, this.values[i]!.subarray(first * n, (first + count) * n), dims);
      feeds[l.pastKey] = k;
      feeds[l.pastValue] = v;
      if (this.cacheOutputs === 'new') {
        fetches[l.newKey] = null;
        fetches[l.newValue] = null;
      } else {
        fetches[l.presentKey] = k;
        fetches[l.presentValue] = v;
      }
    });
    return { feeds, fetches };
  }

  /**
   * Cache tensors for a run over `rows` fresh sequences of at most `positions` tokens that belongs
   * to no slot (a batched prefill of new prompts): zeroed buffers [rows, kvHeads, positions,
   * cacheHeadDim], each layer's past_* and present_* the same memory. Binding scratch instead of
   * slot views means the run cannot touch any other slot's cache; `adopt` copies each row's
   * prefix into its slot afterwards. With cacheOutputs 'new' the buffers are only read (every layer
   * is fed the same zeroes) and `adopt` takes the run's new_* outputs instead.
   */
  scratch(rows: number, positions: number): ScratchKv {
    const feeds: Record<string, ort.Tensor> = {};
    const fetches: Record<string, ort.Tensor | null> = {};
    const keys: KvArray[] = [];
    const values: KvArray[] = [];
    if (this.cacheOutputs === 'new') {
      const size = rows * positions * Math.max(...this.layout.map((l) => l.kvHeads * l.cacheHeadDim));
      const zeroes = this.dtype === 'float16' ? new Uint16Array(size) : new Float32Array(size);
      for (const l of this.layout) {
        const past = new ort.Tensor(this.dtype, zeroes.subarray(0, rows * l.kvHeads * positions * l.cacheHeadDim), [rows, l.kvHeads, positions, l.cacheHeadDim]);
        feeds[l.pastKey] = past;
        feeds[l.pastValue] = past;
        fetches[l.newKey] = null;
        fetches[l.newValue] = null;
      }
      return { feeds, fetches, keys, values, rows, positions };
    }
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
   * `outputs` is the run's result (cacheOutputs 'new': the rows come from its new_* outputs).
   */
  adopt(scratch: ScratchKv, placements: readonly { row: number; slot: number; count: number }[], outputs: ort.InferenceSession.ReturnType): void {
    for (const p of placements) {
      if (this.lengths[p.slot] !== 0) throw new RangeError(`slot ${p.slot} already holds ${this.lengths[p.slot]} tokens`);
      if (p.count > scratch.positions) throw new RangeError(`${p.count} positions exceed the scratch rows of ${scratch.positions}`);
    }
    this.fit(Math.max(0, ...placements.map((p) => p.count)));
    if (this.cacheOutputs === 'new') {
      const slots: number[] = [];
      const ends = new Int32Array(scratch.rows);
      for (const p of placements) {
        slots[p.row] = p.slot;
        ends[p.row] = p.count - 1;
      }
      this.writeNew(outputs, ends, 0, slots);
      for (const p of placements) this.lengths[p.slot] = p.count;
      return;
    }
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

  readPositions(slot: number, from: number, count: number): KvArray {
    if (from < 0 || count < 0 || from + count > this.lengths[slot]!) throw new RangeError(`positions ${from}..${from + count - 1} are not all cached in slot ${slot} (${this.lengths[slot]} tokens)`);
    const size = this.rangeElements(count);
    const out = this.dtype === 'float16' ? new Uint16Array(size) : new Float32Array(size);
    let at = 0;
    this.layout.forEach((l, i) => {
      for (const buffer of [this.keys[i]!, this.values[i]!]) {
        for (let h = 0; h < l.kvHeads; h++) {
          const src = slot * this.slotSizes[i]! + (h * this.capacity + from) * l.cacheHeadDim;
          out.set(buffer.subarray(src, src + count * l.cacheHeadDim), at);
          at += count * l.cacheHeadDim;
        }
      }
    });
    return out;
  }

  restorePositions(slot: number, ranges: readonly KvArray[], count: number): void {
    if (this.lengths[slot] !== 0) throw new RangeError(`slot ${slot} already holds ${this.lengths[slot]} tokens`);
    const size = this.rangeElements(count);
    for (const range of ranges) if (range.length !== size) throw new RangeError(`a range of ${range.length} elements does not hold ${count} positions of this cache (${size} elements)`);
    this.fit(ranges.length * count);
    ranges.forEach((range, r) => {
      let at = 0;
      this.layout.forEach((l, i) => {
        for (const buffer of [this.keys[i]!, this.values[i]!]) {
          for (let h = 0; h < l.kvHeads; h++) {
            const dst = slot * this.slotSizes[i]! + (h * this.capacity + r * count) * l.cacheHeadDim;
            buffer.set(range.subarray(at, at + count * l.cacheHeadDim), dst);
            at += count * l.cacheHeadDim;
          }
        }
      });
    });
    this.lengths[slot] = ranges.length * count;
  }

  /** Elements of `count` positions of every layer's keys and values. */
  private rangeElements(count: number): number {
    return this.layout.reduce((sum, l) => sum + 2 * l.kvHeads * count * l.cacheHeadDim, 0);
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
