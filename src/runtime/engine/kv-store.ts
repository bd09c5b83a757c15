import type * as ort from 'onnxruntime-node';
import type { KvCacheLayout } from '../onnx/decoder-attention.ts';

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
  /** Take over the cache outputs of the run made with the last binding, fed `seqlensK`. */
  commit(outputs: ort.InferenceSession.ReturnType, seqlensK: Int32Array): Promise<void>;
  release(): void;
}

/**
 * Copying a slot's cached positions out and back in (prefix caching): implemented by the host
 * cache only, whose memory JavaScript can read. A copied range is every layer's keys then values,
 * each [kvHeads, count, headDim], in the cache's element type.
 */
export interface SlotKv {
  /** Positions [from, from + count) of a slot, copied out. */
  readPositions(slot: number, from: number, count: number): Float32Array | Uint16Array;
  /** Make an empty slot hold `ranges` back to back from position 0, each of `count` positions. */
  restorePositions(slot: number, ranges: readonly (Float32Array | Uint16Array)[], count: number): void;
}

/**
 * The capacity a cache should have for a run needing `needed` positions: the longest live sequence
 * rounded up to a whole number of INITIAL_CAPACITY positions, grown when it no longer fits and
 * shrunk back when the live sequences use a quarter or less. Each run reads the bound cache whole
 * (attention, and GQA's copy into its own buffer; see kv-cache.ts), so a capacity close to the
 * context in use keeps that work small: at 520 positions it is 640, not the 1,024 that doubling
 * gave (docs/architecture.md, "KV cache", has the figures). A growth re-lays the buffers out once
 * per INITIAL_CAPACITY tokens at most.
 */
export function nextCapacity(capacity: number, needed: number, lengths: Int32Array, maxContext: number): number {
  let live = needed;
  for (const len of lengths) live = Math.max(live, len);
  if (live > capacity) return Math.min(maxContext, roundUp(live));
  if (capacity > INITIAL_CAPACITY && live * 4 <= capacity) return Math.min(maxContext, roundUp(live));
  return capacity;
}

/** n rounded up to a whole number (at least one) of INITIAL_CAPACITY positions. */
function roundUp(n: number): number {
  return Math.max(1, Math.ceil(n / INITIAL_CAPACITY)) * INITIAL_CAPACITY;
}
