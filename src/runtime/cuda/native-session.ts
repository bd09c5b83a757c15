import type { ExecutionTarget } from '../device/device.ts';
import { checkDecodeEntries, checkSlot, type DecodeEntry, type DecoderSession } from '../engine/decoder-session.ts';
import { ContextLengthError } from '../engine/errors.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import { type CudaBinding, loadCudaBinding } from './native-binding.ts';
import { NativeDecoder } from './native-decoder.ts';

export interface NativeSessionOptions {
  maxBatch: number;
  maxContext: number;
  /** Longest prompt piece per pass; default 256. */
  prefillChunk?: number;
  /** The addon, or a stand-in (tests use a kernel emulator); default: the file at `addonPath`. */
  binding?: CudaBinding;
  /** The addon file (`--cuda-addon`); default: build/cuda/mop_cuda.node. */
  addonPath?: string;
  /** Decode steps as CUDA graphs (NativeDecoderOptions.cudaGraphs); default true. */
  cudaGraphs?: boolean;
}

/**
 * A model on the GPU through the native CUDA decoder (device `cuda-native`): the same contract as
 * ModelSession, so the scheduler and the server use it unchanged. Passes are synchronous addon
 * calls; the KV cache never leaves the GPU; only logits come back.
 */
export class NativeCudaSession implements DecoderSession {
  readonly target: ExecutionTarget = { device: 'cuda-native', dtype: 'float16' };
  /** Tokens cached per slot. */
  readonly lengths: Int32Array;

  private constructor(
    readonly spec: ModelSpec,
    private readonly decoder: NativeDecoder,
    readonly maxBatch: number,
    readonly maxContext: number,
    readonly prefillChunk: number,
  ) {
    this.lengths = new Int32Array(maxBatch);
  }

  static async create(spec: ModelSpec, weights: Weights, options: NativeSessionOptions): Promise<NativeCudaSession> {
    let binding = options.binding;
    if (!binding) {
      const load = loadCudaBinding(options.addonPath);
      if (!load.binding) throw new Error(`--device cuda-native is not usable here: ${load.reason}`);
      binding = load.binding;
    }
    const maxContext = Math.min(options.maxContext, spec.maxContext);
    const prefillChunk = options.prefillChunk ?? 256;
    const decoder = NativeDecoder.create(binding, spec, weights, { maxBatch: options.maxBatch, maxContext, maxTokens: Math.max(prefillChunk, options.maxBatch), ...(options.cudaGraphs !== undefined && { cudaGraphs: options.cudaGraphs }) });
    return new NativeCudaSession(spec, decoder, options.maxBatch, maxContext, prefillChunk);
  }

  length(slot: number): number {
    return this.lengths[slot]!;
  }

  reset(slot: number): void {
    this.lengths[slot] = 0;
  }

  async prefill(slot: number, tokens: readonly number[]): Promise<Float32Array> {
    checkSlot(slot, this.maxBatch);
    if (tokens.length === 0) throw new RangeError('prefill needs at least one token');
    const start = this.length(slot);
    if (start + tokens.length > this.maxContext) throw new ContextLengthError(`sequence of ${start + tokens.length} tokens exceeds the context of ${this.maxContext} tokens`);
    let logits: Float32Array = new Float32Array(0);
    for (let off = 0; off < tokens.length; off += this.prefillChunk) {
      const chunk = tokens.slice(off, off + this.prefillChunk);
      const base = this.length(slot);
      logits = this.decoder.forward(
        Int32Array.from(chunk),
        Int32Array.from(chunk, (_, i) => base + i),
        new Int32Array(chunk.length).fill(slot),
        Int32Array.of(chunk.length - 1),
      );
      this.lengths[slot] = base + chunk.length;
    }
    return logits;
  }

  async decode(entries: readonly DecodeEntry[]): Promise<Float32Array[]> {
    if (entries.length === 0) return [];
    checkDecodeEntries(this, entries);
    const n = entries.length;
    const logits = this.decoder.forward(
      Int32Array.from(entries, (e) => e.token),
      Int32Array.from(entries, (e) => this.length(e.slot)),
      Int32Array.from(entries, (e) => e.slot),
      Int32Array.from({ length: n }, (_, i) => i),
    );
    for (const e of entries) this.lengths[e.slot] = this.length(e.slot) + 1;
    const V = this.spec.vocabSize;
    return entries.map((_, i) => logits.subarray(i * V, (i + 1) * V));
  }

  async release(): Promise<void> {
    this.decoder.release();
  }
}
