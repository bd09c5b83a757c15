import type * as ort from 'onnxruntime-node';
import type { OrtDeviceName } from '../device/device.ts';
import type { KvCacheLayout } from '../onnx/decoder-attention.ts';
import type { FloatType } from '../onnx/onnx-model.ts';
import { DeviceKvOps } from './device-kv-ops.ts';
import { INITIAL_CAPACITY, type KvBinding, type KvStore, nextCapacity } from './kv-store.ts';

/**
 * A KV cache that lives in GPU memory (WebGPU provider): per attention layer one key and one value
 * tensor of [maxBatch, kvHeads, capacity, headDim], never copied to the host.
 *
 * How a run uses it, given what onnxruntime-node can do with GPU buffers:
 * - decode binds the whole batch (a GPU buffer cannot be cut into row views from JavaScript);
 *   rows that are not decoding ride along writing a scratch position past their end, as on CPU;
 * - the run's present_* outputs stay on the GPU and become the cache (outputs cannot be bound to
 *   pre-allocated GPU buffers, so GQA writes a fresh buffer; the old one is released);
 * - prefill of one slot takes that row out (batch of one), runs its chunks on it, and scatters it
 *   back when anything else is bound;
 * - capacity grows and shrinks like the host cache (kv-store.ts), by padding or slicing on the GPU.
 */
export class DeviceKvCache implements KvStore {
  readonly lengths: Int32Array;
  capacity = 0;
  private keys: ort.Tensor[] = [];
  private values: ort.Tensor[] = [];
  /** A slot taken out of the batch for prefill (its own [1, …] tensors), until flushed back. */
  private row: { slot: number; keys: ort.Tensor[]; values: ort.Tensor[] } | null = null;
  /** What the last bind handed to a run, so commit knows which tensors the outputs replace. */
  private bound: 'all' | 'row' | null = null;

  private constructor(
    readonly layout: readonly KvCacheLayout[],
    readonly maxBatch: number,
    readonly maxContext: number,
    private readonly ops: DeviceKvOps,
  ) {
    this.lengths = new Int32Array(maxBatch);
  }

  static async create(layout: readonly KvCacheLayout[], maxBatch: number, maxContext: number, device: OrtDeviceName, dtype: FloatType): Promise<DeviceKvCache> {
    const cache = new DeviceKvCache(layout, maxBatch, maxContext, await DeviceKvOps.create(device, dtype));
    const capacity = Math.min(INITIAL_CAPACITY, maxContext);
    for (const l of layout) {
      const dims = [maxBatch, l.kvHeads, capacity, l.cacheHeadDim];
      cache.keys.push(await cache.ops.zeros(dims));
      cache.values.push(await cache.ops.zeros(dims));
    }
    cache.capacity = capacity;
    return cache;
  }

  bindSlot(slot: number, needed: number): Promise<KvBinding> {
    // With one slot the cache is that slot: no need to take it out.
    return this.maxBatch === 1 ? this.bindAll(needed) : this.bindRow(slot, needed);
  }

  /** Decode always binds the whole batch. */
  decodeRows(_count: number): number {
    return this.maxBatch;
  }

  bindDecode(_count: number, needed: number): Promise<KvBinding> {
    return this.bindAll(needed);
  }

  async commit(outputs: ort.InferenceSession.ReturnType): Promise<void> {
    const rows = this.bound === 'row' ? this.row! : { keys: this.keys, values: this.values };
    this.layout.forEach((l, i) => {
      swap(rows.keys, i, outputs[l.presentKey] as ort.Tensor);
      swap(rows.values, i, outputs[l.presentValue] as ort.Tensor);
    });
    this.bound = null;
  }

  release(): void {
    for (const t of [...this.keys, ...this.values, ...(this.row?.keys ?? []), ...(this.row?.values ?? [])]) t.dispose();
    this.keys = [];
    this.values = [];
    this.row = null;
    void this.ops.release();
  }

  private async bindAll(needed: number): Promise<KvBinding> {
    await this.flush();
    await this.fit(needed);
    this.bound = 'all';
    return { feeds: this.feeds(this.keys, this.values), fetches: this.deviceFetches() };
  }

  /**
   * One slot as a batch of one. The row stays apart across the chunks of a prefill and goes back
   * into the batch tensors only when something else is bound (one take and one scatter per prompt).
   */
  private async bindRow(slot: number, needed: number): Promise<KvBinding> {
    if (needed > this.maxContext) throw new RangeError(`${needed} positions exceed the cache's context of ${this.maxContext}`);
    if (this.row && this.row.slot !== slot) await this.flush();
    if (nextCapacity(this.capacity, needed, this.lengths, this.maxContext) !== this.capacity) {
      await this.flush();
      await this.fit(needed);
    }
    if (!this.row) {
      const keys: ort.Tensor[] = [];
      const values: ort.Tensor[] = [];
      for (let i = 0; i < this.layout.length; i++) {
        keys.push(await this.ops.take(this.keys[i]!, slot));
        values.push(await this.ops.take(this.values[i]!, slot));
      }
      this.row = { slot, keys, values };
    }
    this.bound = 'row';
    return { feeds: this.feeds(this.row.keys, this.row.values), fetches: this.deviceFetches() };
  }

  /** Scatter a slot held apart back into the batch tensors. */
  private async flush(): Promise<void> {
    const row = this.row;
    if (!row) return;
    for (let i = 0; i < this.layout.length; i++) {
      swap(this.keys, i, await this.ops.put(this.keys[i]!, row.slot, row.keys[i]!));
      swap(this.values, i, await this.ops.put(this.values[i]!, row.slot, row.values[i]!));
      row.keys[i]!.dispose();
      row.values[i]!.dispose();
    }
    this.row = null;
  }

  private feeds(keys: ort.Tensor[], values: ort.Tensor[]): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    this.layout.forEach((l, i) => {
      feeds[l.pastKey] = keys[i]!;
      feeds[l.pastValue] = values[i]!;
    });
    return feeds;
  }

  /** present_* left for the run to allocate on the GPU (see the class comment). */
  private deviceFetches(): Record<string, null> {
    return Object.fromEntries(this.layout.flatMap((l) => [[l.presentKey, null], [l.presentValue, null]]));
  }

  private async fit(needed: number): Promise<void> {
    if (needed > this.maxContext) throw new RangeError(`${needed} positions exceed the cache's context of ${this.maxContext}`);
    const next = nextCapacity(this.capacity, needed, this.lengths, this.maxContext);
    if (next === this.capacity) return;
    const change = (t: ort.Tensor): Promise<ort.Tensor> => (next > this.capacity ? this.ops.grow(t, next) : this.ops.shrink(t, next));
    for (let i = 0; i < this.layout.length; i++) {
      swap(this.keys, i, await change(this.keys[i]!));
      swap(this.values, i, await change(this.values[i]!));
    }
    this.capacity = next;
  }
}

/** Put `next` at `list[i]`, releasing the GPU buffer it replaces. */
function swap(list: ort.Tensor[], i: number, next: ort.Tensor): void {
  if (list[i] !== next) list[i]?.dispose();
  list[i] = next;
}
