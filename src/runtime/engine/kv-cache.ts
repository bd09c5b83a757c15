import * as ort from 'onnxruntime-node';
import type { KvCacheLayout } from '../onnx/decoder-graph.ts';

/**
 * The KV cache: for each attention layer one key and one value buffer of
 * [maxBatch, kvHeads, maxContext, headDim] floats, allocated once. A sequence owns one batch slot;
 * because the slot is the outermost dimension, slots [0, n) and any single slot are contiguous
 * views, which GroupQueryAttention reads and updates in place (no per-step copy).
 */
export class KvCache {
  private readonly keys: Float32Array[];
  private readonly values: Float32Array[];
  private readonly slotSizes: number[];
  /** Tokens cached per slot. */
  readonly lengths: Int32Array;

  constructor(
    readonly layout: readonly KvCacheLayout[],
    readonly maxBatch: number,
    readonly maxContext: number,
  ) {
    this.slotSizes = layout.map((l) => l.kvHeads * maxContext * l.cacheHeadDim);
    this.keys = this.slotSizes.map((n) => new Float32Array(n * maxBatch));
    this.values = this.slotSizes.map((n) => new Float32Array(n * maxBatch));
    this.lengths = new Int32Array(maxBatch);
  }

  /** Bytes held by the cache (all slots). */
  get byteLength(): number {
    return this.slotSizes.reduce((a, n) => a + 2 * 4 * n * this.maxBatch, 0);
  }

  /**
   * Feeds and fetches for rows [first, first + count): each layer's past_* input and present_*
   * output are the same view of the same memory, so the update happens in place.
   */
  bind(first: number, count: number): { feeds: Record<string, ort.Tensor>; fetches: Record<string, ort.Tensor> } {
    const feeds: Record<string, ort.Tensor> = {};
    const fetches: Record<string, ort.Tensor> = {};
    this.layout.forEach((l, i) => {
      const n = this.slotSizes[i]!;
      const dims = [count, l.kvHeads, this.maxContext, l.cacheHeadDim];
      const k = new ort.Tensor('float32', this.keys[i]!.subarray(first * n, (first + count) * n), dims);
      const v = new ort.Tensor('float32', this.values[i]!.subarray(first * n, (first + count) * n), dims);
      feeds[l.pastKey] = k;
      feeds[l.pastValue] = v;
      fetches[l.presentKey] = k;
      fetches[l.presentValue] = v;
    });
    return { feeds, fetches };
  }

  /** Move a sequence to another slot (keeps active sequences packed at the front of the batch). */
  moveSlot(from: number, to: number): void {
    if (from === to) return;
    const len = this.lengths[from]!;
    this.layout.forEach((_, i) => {
      const n = this.slotSizes[i]!;
      for (const buf of [this.keys[i]!, this.values[i]!]) buf.copyWithin(to * n, from * n, from * n + n);
    });
    this.lengths[to] = len;
    this.lengths[from] = 0;
  }
}
