import { encodeF16 } from '../model/half.ts';
import { type ModelSpec, weightName } from '../model/spec.ts';
import { concatFloat32, type Weights } from '../model/tensor.ts';
import { ropeInverseFrequencies } from '../onnx/rope-cache.ts';
import type { CudaBinding, CudaGraph, LaunchValue } from './native-binding.ts';

export interface NativeDecoderOptions {
  /** KV slots (sequences cached at once). */
  maxBatch: number;
  /** Positions per slot. */
  maxContext: number;
  /** Most token rows in one forward pass (the prefill chunk); at least maxBatch. */
  maxTokens: number;
  /**
   * Replay decode steps as captured CUDA graphs (default true); false launches them kernel by
   * kernel, which tells a graph-capture fault from a kernel fault on a GPU.
   */
  cudaGraphs?: boolean;
}

interface LayerBuffers {
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  attnNorm?: bigint;
  /** [Wq; Wk; Wv] stacked: one GEMV computes the whole projection. */
  wQkv?: bigint;
  wo?: bigint;
  kCache?: bigint;
  vCache?: bigint;
  invFreq?: bigint;
  mlpNorm?: bigint;
  /** [Wgate; Wup] stacked. */
  wGateUp?: bigint;
  wDown?: bigint;
}

const BLOCK = 256;
/** Positions whose attention scores fit the opt-in shared memory of an A100 (163 KiB) and up. */
export const MAX_NATIVE_CONTEXT = 40_960;
const GEMV_ROWS_PER_BLOCK = 8; // kernels.cu

/**
 * The forward pass of a ModelSpec on the GPU through the native addon: float16 weights
 * ([out, in], as loaded), float32 activations, a float16 KV cache of [slot][kvHead][position][dim]
 * per attention layer. Every layer follows its own LayerSpec, so pruned models need nothing
 * special. Token rows of one pass may belong to different slots (a decode batch) or to one slot
 * (a prefill chunk, causal within the chunk because K/V are stored before attention reads them).
 * Q/K/V and gate/up are stacked into one matrix each, so a layer is 9 kernels: RMSNorm, QKV GEMV,
 * RoPE + cache store, attention, O GEMV (adding into the residual), RMSNorm, gate/up GEMV, SiLU·up,
 * down GEMV (adding into the residual). Passes of the same row count whose logits are wanted for
 * every row (decode steps) are captured once as a CUDA graph and replayed: one launch per step.
 */
export class NativeDecoder {
  private readonly buffers: bigint[] = [];
  private readonly layers: LayerBuffers[] = [];
  private readonly graphs = new Map<number, CudaGraph>();
  private embed = 0n;
  private finalNorm = 0n;
  private lmHead = 0n;
  private io!: { tokens: bigint; positions: bigint; slots: bigint; logitRows: bigint };
  private act!: { x: bigint; xn: bigint; qkv: bigint; att: bigint; gateUp: bigint; act: bigint; gathered: bigint; logits: bigint };
  private attentionShared = 0;

  private constructor(
    private readonly cuda: CudaBinding,
    readonly spec: ModelSpec,
    readonly options: NativeDecoderOptions,
  ) {}

  static create(cuda: CudaBinding, spec: ModelSpec, weights: Weights, options: NativeDecoderOptions): NativeDecoder {
    if (spec.attentionBias) throw new RangeError('q/k/v projection biases (qwen2) are not supported by the native kernels: use --device cuda or cpu');
    for (const [i, l] of spec.layers.entries()) {
      if (l.heads > 0 && (l.headDim > BLOCK || l.headDim % 2 !== 0)) throw new RangeError(`layer ${i}: head size ${l.headDim} is not supported by the native kernels (even, at most ${BLOCK})`);
    }
    if (options.maxContext > MAX_NATIVE_CONTEXT) {
      throw new RangeError(`context ${options.maxContext} is too long for the native attention kernel, which keeps a sequence's scores in shared memory: use --context ${MAX_NATIVE_CONTEXT} or less`);
    }
    cuda.init();
    const d = new NativeDecoder(cuda, spec, { ...options, maxTokens: Math.max(options.maxTokens, options.maxBatch) });
    try {
      d.upload(weights);
    } catch (e) {
      d.release();
      throw e;
    }
    return d;
  }

  private alloc(bytes: number): bigint {
    const p = this.cuda.alloc(bytes);
    this.buffers.push(p);
    return p;
  }

  /** Upload tensors as float16, stacked row-wise into one matrix. */
  private half(...tensors: { data: Float32Array }[]): bigint {
    const all = tensors.length === 1 ? tensors[0]!.data : concatFloat32(tensors.map((t) => t.data));
    const bytes = encodeF16(all);
    const p = this.alloc(bytes.byteLength);
    this.cuda.upload(p, bytes);
    return p;
  }

  private upload(weights: Weights): void {
    const { spec } = this;
    const { maxBatch, maxContext, maxTokens } = this.options;
    const w = (name: string) => {
      const t = weights.get(name);
      if (!t) throw new Error(`weight '${name}' missing`);
      return t;
    };
    this.embed = this.half(w(weightName.embed));
    this.finalNorm = this.half(w(weightName.finalNorm));
    this.lmHead = spec.tiedEmbeddings ? this.embed : this.half(w(weightName.lmHead));
    const freqs = new Map<number, bigint>();
    let maxQ = 1;
    let maxQkv = 1;
    let maxFfn = 1;
    spec.layers.forEach((l, i) => {
      const b: LayerBuffers = { ...l };
      if (l.heads > 0) {
        b.attnNorm = this.half(w(weightName.attnNorm(i)));
        b.wQkv = this.half(w(weightName.q(i)), w(weightName.k(i)), w(weightName.v(i)));
        b.wo = this.half(w(weightName.o(i)));
        const cacheBytes = maxBatch * l.kvHeads * maxContext * l.headDim * 2;
        b.kCache = this.alloc(cacheBytes);
        b.vCache = this.alloc(cacheBytes);
        if (!freqs.has(l.headDim)) {
          const inv = Float32Array.from(ropeInverseFrequencies(spec.rope, l.headDim));
          const p = this.alloc(inv.byteLength);
          this.cuda.upload(p, inv);
          freqs.set(l.headDim, p);
        }
        b.invFreq = freqs.get(l.headDim)!;
        maxQ = Math.max(maxQ, l.heads * l.headDim);
        maxQkv = Math.max(maxQkv, (l.heads + 2 * l.kvHeads) * l.headDim);
      }
      if (l.ffn > 0) {
        b.mlpNorm = this.half(w(weightName.mlpNorm(i)));
        b.wGateUp = this.half(w(weightName.gate(i)), w(weightName.up(i)));
        b.wDown = this.half(w(weightName.down(i)));
        maxFfn = Math.max(maxFfn, l.ffn);
      }
      this.layers.push(b);
    });
    const f32 = (n: number) => this.alloc(n * 4);
    const H = spec.hidden;
    this.act = {
      x: f32(maxTokens * H),
      xn: f32(maxTokens * H),
      qkv: f32(maxTokens * maxQkv),
      att: f32(maxTokens * maxQ),
      gateUp: f32(maxTokens * 2 * maxFfn),
      act: f32(maxTokens * maxFfn),
      gathered: f32(maxTokens * H),
      logits: f32(maxBatch * spec.vocabSize), // decode: one row per slot; prefill: the last row
    };
    this.io = { tokens: f32(maxTokens), positions: f32(maxTokens), slots: f32(maxTokens), logitRows: f32(maxTokens) };
    // Scores of every position in shared memory, plus reduction space (kernels.cu mop_attention).
    this.attentionShared = (32 + BLOCK + maxContext) * 4;
    if (this.attentionShared > 48 * 1024) this.cuda.setMaxDynamicShared('mop_attention', this.attentionShared);
    this.cuda.synchronize();
  }

  /**
   * One pass over `tokens` (row r at `positions[r]` of slot `slots[r]`); returns the logits of the
   * rows listed in `logitRows`, as [logitRows.length, vocab] float32.
   */
  forward(tokens: Int32Array, positions: Int32Array, slots: Int32Array, logitRows: Int32Array): Float32Array {
    const n = tokens.length;
    const m = logitRows.length;
    const { maxTokens, maxContext, maxBatch } = this.options;
    if (n === 0 || n > maxTokens) throw new RangeError(`a pass takes 1..${maxTokens} token rows, got ${n}`);
    if (m === 0 || m > Math.min(n, maxBatch)) throw new RangeError(`logit rows must be 1..${Math.min(n, maxBatch)}, got ${m}`);
    const V = this.spec.vocabSize;
    for (let r = 0; r < n; r++) {
      if (!(tokens[r]! >= 0 && tokens[r]! < V)) throw new RangeError(`row ${r}: token id ${tokens[r]} outside the vocabulary 0..${V - 1}`);
      if (!(positions[r]! >= 0 && positions[r]! < maxContext)) throw new RangeError(`row ${r}: position ${positions[r]} outside 0..${maxContext - 1}`);
      if (!(slots[r]! >= 0 && slots[r]! < maxBatch)) throw new RangeError(`row ${r}: slot ${slots[r]} outside 0..${maxBatch - 1}`);
    }
    this.cuda.upload(this.io.tokens, tokens);
    this.cuda.upload(this.io.positions, positions);
    this.cuda.upload(this.io.slots, slots);
    this.cuda.upload(this.io.logitRows, logitRows);
    const everyRow = m === n && logitRows.every((r, i) => r === i);
    if (everyRow && n <= maxBatch && this.options.cudaGraphs !== false) {
      let graph = this.graphs.get(n);
      if (!graph) {
        this.cuda.captureBegin();
        try {
          this.launchAll(n, m);
        } catch (e) {
          try {
            this.cuda.captureEnd(); // end the capture; the partial graph is dropped
          } catch {
            // an invalidated capture fails to end: the launch error above is the one to report
          }
          throw e;
        }
        graph = this.cuda.captureEnd();
        this.graphs.set(n, graph);
      }
      this.cuda.graphLaunch(graph);
    } else {
      this.launchAll(n, m);
    }
    const out = new Float32Array(m * this.spec.vocabSize);
    this.cuda.download(this.act.logits, out);
    return out;
  }

  private launchAll(n: number, m: number): void {
    const { cuda, spec, act, io } = this;
    const H = spec.hidden;
    const { maxContext } = this.options;
    const gemv = (out: bigint, w: bigint, x: bigint, rows: number, rowsOut: number, cols: number, accumulate: boolean) =>
      cuda.launch('mop_gemv', [Math.ceil(rowsOut / GEMV_ROWS_PER_BLOCK), 1, 1], [GEMV_ROWS_PER_BLOCK * 32, 1, 1], 0, 'pppiiii', [out, w, x, rows, rowsOut, cols, accumulate ? 1 : 0]);
    const rmsnorm = (out: bigint, x: bigint, gamma: bigint, rows: number) => cuda.launch('mop_rmsnorm', [rows, 1, 1], [BLOCK, 1, 1], 0, 'pppif', [out, x, gamma, H, spec.normEps]);
    cuda.launch('mop_embed', [n, 1, 1], [BLOCK, 1, 1], 0, 'pppi', [act.x, this.embed, io.tokens, H]);
    for (const l of this.layers) {
      if (l.heads > 0) {
        const q = l.heads * l.headDim;
        rmsnorm(act.xn, act.x, l.attnNorm!, n);
        gemv(act.qkv, l.wQkv!, act.xn, n, (l.heads + 2 * l.kvHeads) * l.headDim, H, false);
        const ropeArgs: LaunchValue[] = [act.qkv, io.positions, io.slots, l.invFreq!, l.kCache!, l.vCache!, l.heads, l.kvHeads, l.headDim, maxContext];
        cuda.launch('mop_rope_store', [n, 1, 1], [128, 1, 1], 0, 'ppppppiiii', ropeArgs);
        const attArgs: LaunchValue[] = [act.att, act.qkv, l.kCache!, l.vCache!, io.positions, io.slots, l.heads, l.kvHeads, l.headDim, maxContext, 1 / Math.sqrt(l.headDim)];
        cuda.launch('mop_attention', [n, l.heads, 1], [BLOCK, 1, 1], this.attentionShared, 'ppppppiiiif', attArgs);
        gemv(act.x, l.wo!, act.att, n, H, q, true);
      }
      if (l.ffn > 0) {
        rmsnorm(act.xn, act.x, l.mlpNorm!, n);
        gemv(act.gateUp, l.wGateUp!, act.xn, n, 2 * l.ffn, H, false);
        cuda.launch('mop_silu_mul', [Math.ceil((n * l.ffn) / BLOCK), 1, 1], [BLOCK, 1, 1], 0, 'ppii', [act.act, act.gateUp, n, l.ffn]);
        gemv(act.x, l.wDown!, act.act, n, H, l.ffn, true);
      }
    }
    cuda.launch('mop_gather_rows', [m, 1, 1], [BLOCK, 1, 1], 0, 'pppi', [act.gathered, act.x, io.logitRows, H]);
    rmsnorm(act.gathered, act.gathered, this.finalNorm, m);
    gemv(act.logits, this.lmHead, act.gathered, m, spec.vocabSize, H, false);
  }

  release(): void {
    this.graphs.clear();
    for (const p of this.buffers.splice(0)) this.cuda.free(p);
  }
}
