import type * as ort from 'onnxruntime-node';
import type { KvCacheLayout } from '../onnx/decoder-graph.ts';

/** The smallest capacity a cache starts with (tokens per sequence). */
export const INITIAL_CAPACITY = 128;

/** Cache tensors to feed one run and the outputs to fetch (decodeRows says how many rows they cover). */
export interface KvBinding {
  feeds: Record<string, ort.Tensor>;
  /** Pre-allocated outputs (written in place), or null to let the run allocate them. */
  fetches: Record<string, ort.Tensor | null>;
}

/**
 * A KV cache as the model session sees it: slots of up to maxContext positions, bound to a run and
 * updated from its outputs. Host memory (kv-cache.ts) and GPU memory (device-kv-cache.ts) are the
 * two kinds; the graph is the same for both.
 */
export interface KvStore {
  readonly layout: readonly KvCacheLayout[];
  readonly maxBatch: number;
  readonly maxContext: number;
  /** Positions per sequence the buffers hold now (≤ maxContext). */
  readonly capacity: number;
  /** Tokens cached per slot. */
  readonly lengths: Int32Array;
  /** Bind one slot as a batch of one (prefill), with room for `needed` positions. */
  bindSlot(slot: number, needed: number): Promise<KvBinding>;
  /** Batch rows a decode over slots [0, count) binds, starting at slot 0: `count`, or every slot
   * where the cache cannot bind a part of the batch. */
  decodeRows(count: number): number;
  /** Bind slots [0, decodeRows(count)) for a decode step, with room for `needed` positions. */
  bindDecode(count: number, needed: number): Promise<KvBinding>;
  /** Take over the cache outputs of the run made with the last binding. */
  commit(outputs: ort.InferenceSession.ReturnType): Promise<void>;
  release(): void;
}

/**
 * The capacity a cache should have for a run needing `needed` positions: double (at least to the
 * next power of two) when the longest live sequence no longer fits, halve back when the live
 * sequences use a quarter or less. Keeps per-run costs proportional to the context in use.
 */
export function nextCapacity(capacity: number, needed: number, lengths: Int32Array, maxContext: number): number {
  let live = needed;
  for (const len of lengths) live = Math.max(live, len);
  if (live > capacity) return Math.min(maxContext, Math.max(capacity * 2, nextPowerOfTwo(live)));
  if (capacity > INITIAL_CAPACITY && live * 4 <= capacity) return Math.max(INITIAL_CAPACITY, nextPowerOfTwo(live) * 2);
  return capacity;
}

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}
