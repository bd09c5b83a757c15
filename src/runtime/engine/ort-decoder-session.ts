import * as ort from 'onnxruntime-node';
import { cpuTarget, type DeviceName, type ExecutionTarget } from '../device/device.ts';
import { createOrtSession, type OutputLocation } from '../device/ort-session.ts';
import type { FileBlocks } from '../model/block-quantization.ts';
import type { ModelSpec } from '../model/spec.ts';
import { concatFloat32, type Weights } from '../model/tensor.ts';
import type { CacheOutputs } from '../onnx/decoder-attention.ts';
import { buildDecoderGraph, type DecoderGraph } from '../onnx/decoder-graph.ts';
import type { MatMulNBitsSettings } from '../onnx/matmul-nbits.ts';
import { DeviceKvCache } from './device-kv-cache.ts';
import { checkDecodeEntries, checkSlot, type DecodeEntry, type DecoderSession, type PrefillEntry } from './decoder-session.ts';
import { ContextLengthError } from './errors.ts';
import { KvCache } from './kv-cache.ts';
import type { KvStore, SlotKv } from './kv-store.ts';

export interface ModelSessionOptions {
  /** Sequences that can be cached at once (KV slots). */
  maxBatch: number;
  /** Tokens per sequence; at most the model's maxContext. */
  maxContext: number;
  /** 'last' for serving; 'all' returns logits for every prefill position (evaluation). */
  logits?: 'last' | 'all';
  /** Intra-op threads; default: all cores. */
  threads?: number;
  /**
   * Longest prompt piece run at once; longer prompts are prefilled in chunks. Default 512, and
   * WEBGPU_PREFILL_CHUNK on WebGPU.
   */
  prefillChunk?: number;
  /** Device and element type; default: CPU, float32. */
  target?: ExecutionTarget;
  /** A graph already built for this spec and target dtype, for at least this context (benchmarks reuse one). */
  graph?: DecoderGraph;
  /**
   * Run fresh prompts that arrive together as one batch (prefillBatch). CPU with logits 'last'
   * only; default BATCH_PREFILL_DEFAULT. Off, or elsewhere, prefillBatch prefills one by one.
   */
  batchPrefill?: boolean;
  /** Padding allowed in a prefill batch, as padded / real tokens; default BATCH_PREFILL_PADDING. */
  batchPrefillPadding?: number;
  /** The checkpoint's own quantized matrices, run as they are by an int8 / int4 graph where they match. */
  fileBlocks?: FileBlocks;
  /** How an int8 / int4 graph's MatMulNBits nodes are built; default what serving runs (benchmarks vary it). */
  matMulNBits?: MatMulNBitsSettings;
  /** Record ONNX Runtime's per-op profile (benchmarks); endProfiling() writes it. */
  profilePrefix?: string;
  /** How the cache leaves each run (DecoderGraphOptions.cacheOutputs); default cacheOutputsOn(device). */
  cacheOutputs?: CacheOutputs;
  /** Idle intra-op threads spin between runs (OrtSessionOptions.spin); default false. */
  spin?: boolean;
}

/**
 * The cache outputs a session's graph has on a device: on the CPU only the new positions leave the
 * graph (DecoderGraphOptions.cacheOutputs); WebGPU keeps the whole cache on the GPU, and the CUDA
 * provider keeps the in-place form, not yet measured otherwise on a GPU.
 */
export function cacheOutputsOn(device: DeviceName): CacheOutputs {
  return device === 'cpu' ? 'new' : 'present';
}

/** Whether a CPU session batches fresh prompts unless told otherwise (see docs/architecture.md). */
export const BATCH_PREFILL_DEFAULT = true;

/**
 * A batch of fresh prompts is right-padded to its longest one for attention (the projections and
 * MLP see only real tokens: packed tokens); a prompt joins a batch only while the padded tokens
 * stay within this factor of the real ones, which bounds the attention work spent on padding.
 */
export const BATCH_PREFILL_PADDING = 4;

/**
 * ONNX Runtime 1.30's WebGPU GroupQueryAttention gives wrong outputs for query rows 8 and up when
 * a run has 32 or more new tokens (measured on Mesa's lavapipe, whose subgroups are 8 wide; not yet
 * checked on NVIDIA, where scripts/gpu-check.ts measures both chunk sizes). Below 32 it matches the
 * CPU to 1e-5, so WebGPU prefill runs in pieces of 16 tokens unless told otherwise.
 */
export const WEBGPU_PREFILL_CHUNK = 16;

export type { DecodeEntry, PrefillEntry } from './decoder-session.ts';

/**
 * An ONNX Runtime session over a model's decoder graph plus its KV cache: the engine's unit of
 * execution. It knows tokens and logits, nothing of text or HTTP. Runs are serialised, because
 * the cache is shared state.
 */
export class ModelSession implements DecoderSession {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly spec: ModelSpec,
    private readonly session: ort.InferenceSession,
    readonly graph: DecoderGraph,
    readonly cache: KvStore,
    readonly prefillChunk: number,
    readonly target: ExecutionTarget,
    /** Whether prefillBatch runs fresh prompts together (host cache, per-row last logits). */
    readonly batchesPrefill: boolean,
    private readonly batchPadding: number,
  ) {}

  static async create(spec: ModelSpec, weights: Weights, options: ModelSessionOptions): Promise<ModelSession> {
    const maxContext = Math.min(options.maxContext, spec.maxContext);
    if (!(options.maxBatch >= 1)) throw new RangeError(`maxBatch must be at least 1, got ${options.maxBatch}`);
    const target = options.target ?? cpuTarget;
    const device = target.device;
    if (device === 'cuda-native') throw new RangeError('cuda-native runs no ONNX graph: open it with createDecoderSession');
    // A graph built for a longer context serves a shorter one (its RoPE tables cover more).
    const cacheOutputs = options.cacheOutputs ?? cacheOutputsOn(device);
    if (device === 'webgpu' && cacheOutputs !== 'present') throw new RangeError(`cacheOutputs '${cacheOutputs}' needs a host-memory cache; WebGPU keeps the cache on the GPU: use 'present'`);
    if (options.graph && (options.graph.maxContext < maxContext || options.graph.dtype !== target.dtype || options.graph.weights !== target.weights || options.graph.logits !== (options.logits ?? 'last') || options.graph.cacheOutputs !== cacheOutputs)) {
      throw new RangeError(`the graph given was built for context ${options.graph.maxContext} in ${options.graph.dtype} with ${options.graph.cacheOutputs} cache outputs, not ${maxContext} in ${target.dtype} with ${cacheOutputs}`);
    }
    // On the CPU the 'last' graph takes packed tokens, so a batch of prompts of different lengths
    // pays for padding in attention only (batched prefill).
    // Without batched prefill the packing's gathers would only cost time (two per attention layer).
    const packedTokens = device === 'cpu' && (options.logits ?? 'last') === 'last' && (options.batchPrefill ?? BATCH_PREFILL_DEFAULT);
    const graph = options.graph ?? buildDecoderGraph(spec, weights, { maxContext, logits: options.logits ?? 'last', dtype: target.dtype, ...(target.weights && { weights: target.weights }), ...(options.fileBlocks && { fileBlocks: options.fileBlocks }), ...options.matMulNBits, packedTokens, fuseResidualNorm: device === 'cpu', cacheOutputs });
    // Only the WebGPU provider can leave outputs on the GPU in onnxruntime-node: there the cache
    // stays on the device; on CPU and CUDA it lives in host memory.
    const onDevice = target.device === 'webgpu';
    const outputLocations: Record<string, OutputLocation> | undefined = onDevice
      ? Object.fromEntries([['logits', 'cpu'], ...graph.kvLayers.flatMap((l) => [[l.presentKey, 'gpu-buffer'], [l.presentValue, 'gpu-buffer']])])
      : undefined;
    const session = await createOrtSession(graph.model, device, {
      ...(options.threads !== undefined && { threads: options.threads }),
      ...(outputLocations && { outputLocations }),
      ...(options.profilePrefix !== undefined && { profilePrefix: options.profilePrefix }),
      ...(options.spin !== undefined && { spin: options.spin }),
    });
    const cache: KvStore = onDevice
      ? await DeviceKvCache.create(graph.kvLayers, options.maxBatch, maxContext, device, target.dtype)
      : new KvCache(graph.kvLayers, options.maxBatch, maxContext, target.dtype, graph.cacheOutputs);
    const prefillChunk = options.prefillChunk ?? (target.device === 'webgpu' ? WEBGPU_PREFILL_CHUNK : 512);
    const batchesPrefill = (options.batchPrefill ?? BATCH_PREFILL_DEFAULT) && device === 'cpu' && graph.packedTokens && cache instanceof KvCache;
    const padding = options.batchPrefillPadding ?? BATCH_PREFILL_PADDING;
    if (!(padding >= 1)) throw new RangeError(`batchPrefillPadding must be at least 1, got ${padding}`);
    return new ModelSession(spec, session, graph, cache, prefillChunk, target, batchesPrefill, padding);
  }

  get maxBatch(): number {
    return this.cache.maxBatch;
  }

  get maxContext(): number {
    return this.cache.maxContext;
  }

  /** Tokens cached for a slot. */
  length(slot: number): number {
    return this.cache.lengths[slot]!;
  }

  /** The host cache's slots can be copied (prefix caching); the WebGPU one's cannot. */
  get slotKv(): SlotKv | undefined {
    return this.cache instanceof KvCache ? this.cache : undefined;
  }

  /** Forget a slot's sequence (its memory is simply overwritten later). */
  reset(slot: number): void {
    this.cache.lengths[slot] = 0;
  }

  /**
   * Append `tokens` to the slot's sequence. Returns logits of the last position ([vocab]), or of
   * every new position ([tokens * vocab]) when the graph was built with logits 'all'.
   */
  async prefill(slot: number, tokens: readonly number[]): Promise<Float32Array> {
    checkSlot(slot, this.maxBatch);
    if (tokens.length === 0) throw new RangeError('prefill needs at least one token');
    const start = this.length(slot);
    if (start + tokens.length > this.maxContext) {
      throw new ContextLengthError(`sequence of ${start + tokens.length} tokens exceeds the context of ${this.maxContext} tokens`);
    }
    return this.serialised(async () => {
      const parts: Float32Array[] = [];
      for (let off = 0; off < tokens.length; off += this.prefillChunk) {
        const chunk = tokens.slice(off, off + this.prefillChunk);
        const base = this.length(slot);
        const total = base + chunk.length;
        const { feeds, fetches } = await this.cache.bindSlot(slot, total);
        const seqlensK = Int32Array.of(total - 1);
        const out = await this.session.run(
          {
            ...feeds,
            input_ids: new ort.Tensor('int64', BigInt64Array.from(chunk, (t) => BigInt(t)), [1, chunk.length]),
            ...(this.graph.packedTokens && packedIndexFeeds([chunk.length], chunk.length)),
            seqlens_k: new ort.Tensor('int32', seqlensK, [1]),
            total_sequence_length: new ort.Tensor('int32', Int32Array.of(total), []),
          },
          { ...fetches, logits: null } as unknown as ort.InferenceSession.FetchesType,
        );
        await this.cache.commit(out, seqlensK);
        this.cache.lengths[slot] = total;
        parts.push(out.logits!.data as Float32Array);
      }
      if (this.graph.logits === 'last') return parts[parts.length - 1]!;
      return concatFloat32(parts);
    });
  }

  /**
   * Prefill several slots; logits of each entry's last position, in entry order. Fresh prompts
   * (empty slot, at most prefillChunk tokens) run together as one batch: GroupQueryAttention's
   * "first prompt" case (sequence length = total_sequence_length, no past), each row right-padded
   * to the longest with seqlens_k = its own length - 1, which gives every row causal attention over
   * its own tokens only and RoPE positions from 0. The run binds slot-less scratch cache rows
   * (KvCache.scratch), and each row's real positions are then copied into its slot, so no other
   * slot, decoding or not, is touched. GQA has no batched form for rows with a cached past ("batch
   * size must be 1 when sequence_length > 1 and past context is given"), so those, lone prompts,
   * and every entry of a session that does not batch (WebGPU, CUDA provider, logits 'all') are
   * prefilled one by one.
   */
  async prefillBatch(entries: readonly PrefillEntry[]): Promise<Float32Array[]> {
    const seen = new Set<number>();
    for (const e of entries) {
      checkSlot(e.slot, this.maxBatch);
      if (seen.has(e.slot)) throw new RangeError(`slot ${e.slot} appears twice in one prefill batch`);
      seen.add(e.slot);
      if (e.tokens.length === 0) throw new RangeError('prefill needs at least one token');
      if (this.length(e.slot) + e.tokens.length > this.maxContext) {
        throw new ContextLengthError(`sequence of ${this.length(e.slot) + e.tokens.length} tokens exceeds the context of ${this.maxContext} tokens`);
      }
    }
    const results: Float32Array[] = new Array(entries.length);
    const groups = this.batchesPrefill ? freshPromptGroups(entries, (slot) => this.length(slot), this.prefillChunk, this.batchPadding) : [];
    for (const group of groups) {
      const logits = await this.serialised(() => this.prefillFresh(group.map((i) => entries[i]!)));
      group.forEach((i, k) => (results[i] = logits[k]!));
    }
    const V = this.spec.vocabSize;
    for (let i = 0; i < entries.length; i++) {
      if (results[i]) continue;
      const logits = await this.prefill(entries[i]!.slot, entries[i]!.tokens);
      results[i] = logits.subarray(logits.length - V);
    }
    return results;
  }

  /** One run over fresh prompts right-padded to the longest (see prefillBatch). */
  private async prefillFresh(batch: readonly PrefillEntry[]): Promise<Float32Array[]> {
    const cache = this.cache as KvCache;
    for (const e of batch) if (this.length(e.slot) !== 0) throw new Error(`slot ${e.slot} is not empty`);
    const rows = batch.length;
    const counts = batch.map((e) => e.tokens.length);
    const S = Math.max(...counts);
    // The tokens back to back; attention sees them right-padded to S (padding positions repeat a
    // row's last token: their outputs and cache entries are never read).
    const ids = BigInt64Array.from(batch.flatMap((e) => e.tokens), (t) => BigInt(t));
    const seqlensK = Int32Array.from(counts, (n) => n - 1);
    const scratch = cache.scratch(rows, S);
    const out = await this.session.run(
      {
        ...scratch.feeds,
        input_ids: new ort.Tensor('int64', ids, [1, ids.length]),
        ...packedIndexFeeds(counts, S),
        seqlens_k: new ort.Tensor('int32', seqlensK, [rows]),
        total_sequence_length: new ort.Tensor('int32', Int32Array.of(S), []),
      },
      { ...scratch.fetches, logits: null } as unknown as ort.InferenceSession.FetchesType,
    );
    cache.adopt(scratch, batch.map((e, r) => ({ row: r, slot: e.slot, count: e.tokens.length })), out);
    const logits = out.logits!.data as Float32Array;
    const V = this.spec.vocabSize;
    return batch.map((_, r) => logits.subarray(r * V, (r + 1) * V));
  }

  /**
   * One decode step for several sequences at once: each entry appends one token to its slot.
   * The batch covers rows [0, highest slot]; rows not in `entries` ride along writing a scratch
   * position past their end that their next real step overwrites. Returns logits per entry.
   */
  async decode(entries: readonly DecodeEntry[]): Promise<Float32Array[]> {
    if (entries.length === 0) return [];
    checkDecodeEntries(this, entries);
    const highest = Math.max(...entries.map((e) => e.slot)) + 1;
    return this.serialised(async () => {
      const rows = this.cache.decodeRows(highest);
      const ids = new BigInt64Array(rows);
      const seqlensK = new Int32Array(rows);
      for (let r = 0; r < rows; r++) seqlensK[r] = Math.min(this.length(r), this.maxContext - 1);
      for (const e of entries) ids[e.slot] = BigInt(e.token);
      const total = Math.max(...seqlensK) + 1;
      const { feeds, fetches } = await this.cache.bindDecode(highest, total);
      const out = await this.session.run(
        {
          ...feeds,
          input_ids: new ort.Tensor('int64', ids, this.graph.packedTokens ? [1, rows] : [rows, 1]),
          ...(this.graph.packedTokens && packedIndexFeeds(new Array<number>(rows).fill(1), 1)),
          seqlens_k: new ort.Tensor('int32', seqlensK, [rows]),
          total_sequence_length: new ort.Tensor('int32', Int32Array.of(total), []),
        },
        { ...fetches, logits: null } as unknown as ort.InferenceSession.FetchesType,
      );
      await this.cache.commit(out, seqlensK);
      const logits = out.logits!.data as Float32Array;
      const V = this.spec.vocabSize;
      for (const e of entries) this.cache.lengths[e.slot] = this.length(e.slot) + 1;
      return entries.map((e) => logits.subarray(e.slot * V, (e.slot + 1) * V));
    });
  }

  /** Write the per-op profile a session created with `profilePrefix` has recorded so far. */
  async endProfiling(): Promise<void> {
    await this.queue.catch(() => undefined);
    this.session.endProfiling();
  }

  async release(): Promise<void> {
    await this.queue.catch(() => undefined);
    this.cache.release();
    await this.session.release();
  }

  private serialised<T>(run: () => Promise<T>): Promise<T> {
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }
}


/**
 * Where a packed-tokens graph (DecoderGraphOptions.packedTokens) finds each row's tokens: rows of
 * `counts[b]` new tokens, back to back in input_ids, laid out for attention as [rows, S]. A
 * padding position names its row's last token; logits come from each row's last token.
 */
export function packedIndexFeeds(counts: readonly number[], S: number): Record<string, ort.Tensor> {
  const T = counts.reduce((a, b) => a + b, 0);
  const pack = new BigInt64Array(counts.length * S);
  const unpack = new BigInt64Array(T);
  const logit = new BigInt64Array(counts.length);
  let offset = 0;
  counts.forEach((n, b) => {
    if (n < 1 || n > S) throw new RangeError(`row ${b}: ${n} tokens in rows of ${S}`);
    for (let s = 0; s < S; s++) pack[b * S + s] = BigInt(offset + Math.min(s, n - 1));
    for (let s = 0; s < n; s++) unpack[offset + s] = BigInt(b * S + s);
    logit[b] = BigInt(offset + n - 1);
    offset += n;
  });
  return {
    pack_index: new ort.Tensor('int64', pack, [pack.length]),
    unpack_index: new ort.Tensor('int64', unpack, [T]),
    logit_index: new ort.Tensor('int64', logit, [counts.length]),
  };
}

/**
 * Which entries a batched prefill runs together: fresh prompts (empty slot, at most `chunk`
 * tokens), longest first, grouped while right-padding to the group's longest keeps the padded
 * tokens within `padding` times the real ones. Groups of two or more, as entry indices.
 */
export function freshPromptGroups(entries: readonly PrefillEntry[], length: (slot: number) => number, chunk: number, padding = BATCH_PREFILL_PADDING): number[][] {
  const fresh = entries
    .map((e, i) => ({ i, n: e.tokens.length }))
    .filter(({ i, n }) => length(entries[i]!.slot) === 0 && n <= chunk)
    .sort((a, b) => b.n - a.n || a.i - b.i);
  const groups: number[][] = [];
  let group: number[] = [];
  let longest = 0;
  let real = 0;
  for (const { i, n } of fresh) {
    if (group.length > 0 && (group.length + 1) * longest <= padding * (real + n)) {
      group.push(i);
      real += n;
      continue;
    }
    if (group.length > 1) groups.push(group);
    group = [i];
    longest = n;
    real = n;
  }
  if (group.length > 1) groups.push(group);
  return groups;
}
