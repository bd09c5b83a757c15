import os from 'node:os';
import * as ort from 'onnxruntime-node';
import type { ModelSpec } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import { buildDecoderGraph, type DecoderGraph } from '../onnx/decoder-graph.ts';
import { ContextLengthError } from './errors.ts';
import { KvCache } from './kv-cache.ts';

export interface ModelSessionOptions {
  /** Sequences that can be cached at once (KV slots). */
  maxBatch: number;
  /** Tokens per sequence; at most the model's maxContext. */
  maxContext: number;
  /** 'last' for serving; 'all' returns logits for every prefill position (evaluation). */
  logits?: 'last' | 'all';
  /** Intra-op threads; default: all cores. */
  threads?: number;
  /** Longest prompt piece run at once; longer prompts are prefilled in chunks. */
  prefillChunk?: number;
}

/** One token to append to one slot's sequence in a batched decode step. */
export interface DecodeEntry {
  slot: number;
  token: number;
}

/**
 * An ONNX Runtime session over a model's decoder graph plus its KV cache: the engine's unit of
 * execution. It knows tokens and logits, nothing of text or HTTP. Runs are serialised, because
 * the cache is shared state.
 */
export class ModelSession {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly spec: ModelSpec,
    private readonly session: ort.InferenceSession,
    readonly graph: DecoderGraph,
    readonly cache: KvCache,
    readonly prefillChunk: number,
  ) {}

  static async create(spec: ModelSpec, weights: Weights, options: ModelSessionOptions): Promise<ModelSession> {
    const maxContext = Math.min(options.maxContext, spec.maxContext);
    if (!(options.maxBatch >= 1)) throw new RangeError(`maxBatch must be at least 1, got ${options.maxBatch}`);
    const graph = buildDecoderGraph(spec, weights, { maxContext, logits: options.logits ?? 'last' });
    const threads = options.threads ?? os.availableParallelism();
    const session = await ort.InferenceSession.create(graph.model, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      // Idle pool threads must not spin: on a small machine they steal the cores that the next
      // run (or another session, or the event loop) needs.
      extra: { session: { intra_op: { allow_spinning: process.env.MOP_ORT_SPIN === '1' ? '1' : '0' }, inter_op: { allow_spinning: '0' } } },
    });
    const cache = new KvCache(graph.kvLayers, options.maxBatch, maxContext);
    return new ModelSession(spec, session, graph, cache, options.prefillChunk ?? 512);
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

  /** Forget a slot's sequence (its memory is simply overwritten later). */
  reset(slot: number): void {
    this.cache.lengths[slot] = 0;
  }

  /**
   * Append `tokens` to the slot's sequence. Returns logits of the last position ([vocab]), or of
   * every new position ([tokens * vocab]) when the graph was built with logits 'all'.
   */
  async prefill(slot: number, tokens: readonly number[]): Promise<Float32Array> {
    this.checkSlot(slot);
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
        const { feeds, fetches } = this.cache.bind(slot, 1, total);
        const out = await this.session.run(
          {
            ...feeds,
            input_ids: new ort.Tensor('int64', BigInt64Array.from(chunk, (t) => BigInt(t)), [1, chunk.length]),
            seqlens_k: new ort.Tensor('int32', Int32Array.of(total - 1), [1]),
            total_sequence_length: new ort.Tensor('int32', Int32Array.of(total), []),
          },
          { ...fetches, logits: null } as unknown as ort.InferenceSession.FetchesType,
        );
        this.cache.lengths[slot] = total;
        parts.push(out.logits!.data as Float32Array);
      }
      if (this.graph.logits === 'last') return parts[parts.length - 1]!;
      return concat(parts);
    });
  }

  /**
   * One decode step for several sequences at once: each entry appends one token to its slot.
   * The batch covers rows [0, highest slot]; rows not in `entries` ride along writing a scratch
   * position past their end that their next real step overwrites. Returns logits per entry.
   */
  async decode(entries: readonly DecodeEntry[]): Promise<Float32Array[]> {
    if (entries.length === 0) return [];
    const rows = Math.max(...entries.map((e) => e.slot)) + 1;
    const ids = new BigInt64Array(rows);
    const seqlensK = new Int32Array(rows);
    const active = new Set<number>();
    for (const e of entries) {
      this.checkSlot(e.slot);
      if (active.has(e.slot)) throw new RangeError(`slot ${e.slot} appears twice in one decode step`);
      if (this.length(e.slot) >= this.maxContext) {
        throw new ContextLengthError(`slot ${e.slot} is full: the context of ${this.maxContext} tokens is used up`);
      }
      active.add(e.slot);
      ids[e.slot] = BigInt(e.token);
    }
    for (let r = 0; r < rows; r++) seqlensK[r] = Math.min(this.length(r), this.maxContext - 1);
    const total = Math.max(...seqlensK) + 1;
    return this.serialised(async () => {
      const { feeds, fetches } = this.cache.bind(0, rows, total);
      const out = await this.session.run(
        {
          ...feeds,
          input_ids: new ort.Tensor('int64', ids, [rows, 1]),
          seqlens_k: new ort.Tensor('int32', seqlensK, [rows]),
          total_sequence_length: new ort.Tensor('int32', Int32Array.of(total), []),
        },
        { ...fetches, logits: null } as unknown as ort.InferenceSession.FetchesType,
      );
      const logits = out.logits!.data as Float32Array;
      const V = this.spec.vocabSize;
      for (const e of entries) this.cache.lengths[e.slot] = this.length(e.slot) + 1;
      return entries.map((e) => logits.subarray(e.slot * V, (e.slot + 1) * V));
    });
  }

  async release(): Promise<void> {
    await this.queue.catch(() => undefined);
    await this.session.release();
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.maxBatch) throw new RangeError(`slot ${slot} is outside 0..${this.maxBatch - 1}`);
  }

  private serialised<T>(run: () => Promise<T>): Promise<T> {
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
