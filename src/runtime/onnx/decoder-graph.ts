import { type ModelSpec, weightName } from '../model/spec.ts';
import { concatFloat32, type Tensor, type Weights } from '../model/tensor.ts';
import { paddedHeadDim } from './head-padding.ts';
import { DataType, type FloatType, floatTypeCode, type OnnxModel, OnnxGraphBuilder } from './onnx-model.ts';
import { ropeTableInitializers } from './rope-cache.ts';
import { type BlockQuantizedMatrix, bitsOf, checkQuantizable, type FileBlocks, holdsExactly, quantizeMatrix, stackBlockRows, type WeightQuantization } from '../model/block-quantization.ts';
import { blockSizeSetting, matMulNBits } from './matmul-nbits.ts';

/**
 * ModelSpec + weights → an ONNX decoder graph with a KV cache, built from ONNX Runtime's LLM
 * operators: GroupQueryAttention (fused RoPE, causal attention over a cache that is updated in
 * place), SimplifiedLayerNormalization (RMSNorm). Every layer is built from its own LayerSpec, so a
 * pruned model needs no special case: a layer without heads has no attention, one without ffn no MLP.
 *
 * Inputs:  input_ids int64 [B,S] ([1,T] with packedTokens, see below); seqlens_k int32 [B] (tokens in cache after this step, minus 1);
 *          total_sequence_length int32 scalar (max over the batch of seqlens_k + 1);
 *          past_key_i / past_value_i float [B, kvHeads_i, capacity, cacheHeadDim_i] per attention layer
 *          (capacity ≤ maxContext, chosen per run by the KV cache).
 * Outputs: logits float32 [B, S or 1, vocab]; present_key_i / present_value_i (same shape as past),
 *          or with cacheOutputs 'new' new_key_i / new_value_i [B, kvHeads_i, S, cacheHeadDim_i].
 * Weights, activations and the cache are `dtype` (float16 on GPUs); RMSNorm accumulates in float32
 * (stash_type) and logits are cast to float32 before they leave the graph.
 * Bind present_* to the very buffers given as past_*: GQA then writes only the new positions
 * instead of copying the cache (its "past-present share buffer" mode).
 * With `weights` int8 / int4, every block projection and the LM head are MatMulNBits nodes over
 * weights quantized here from float32 (block-quantization.ts), or over the checkpoint's own blocks
 * (`fileBlocks`) where those hold exactly the float weights given; the embedding gather, norms,
 * activations and cache stay float32.
 */
export interface DecoderGraphOptions {
  /** KV cache length per sequence (prompt + generated tokens); RoPE tables cover it. */
  maxContext: number;
  /** 'last': logits of the final position only (serving); 'all': every position (evaluation). */
  logits: 'last' | 'all';
  /** Element type of weights, activations and KV cache; default float32. */
  dtype?: FloatType;
  /** Block-quantized projections and LM head (CPU, float32 activations only). */
  weights?: WeightQuantization;
  /** Values per quantization block along the input width; default 32 (MOP_NBITS_BLOCK). */
  blockSize?: number;
  /** The checkpoint's own quantized matrices: run as they are where they match (see above). */
  fileBlocks?: FileBlocks;
  /**
   * Fold each residual Add into the RMSNorm after it (com.microsoft.SkipSimplifiedLayerNormalization
   * returns the normalised sum and the sum): one node instead of two per sub-block. CPU graphs;
   * default false.
   */
  fuseResidualNorm?: boolean;
  /**
   * Run each MLP's gate and up projections as one matrix (their rows stacked) and split the result:
   * one MatMul / MatMulNBits per MLP instead of two. Default false.
   */
  fuseGateUp?: boolean;
  /**
   * Packed tokens (logits 'last' only): input_ids is [1, T], the new tokens of every row back to
   * back, and everything but attention runs on those T tokens. Three more inputs place them:
   * pack_index int64 [B*S] (the packed token at each position of GroupQueryAttention's [B, S]
   * layout; padding positions may name any token), unpack_index int64 [T] (each token's position
   * b*S + s in that layout), logit_index int64 [B] (the packed token whose logits row b returns).
   * A batch of fresh prompts of different lengths then pays for padding in attention only, not in
   * the projections and MLP (model-session.ts prefillBatch). Default false: input_ids [B, S].
   */
  packedTokens?: boolean;
  /**
   * What the graph returns of the cache. 'present' (default): present_key_i / present_value_i,
   * the whole cache, which the caller binds to its past_* buffers so that GroupQueryAttention
   * writes the new positions in place. 'new': only the positions this run added,
   * new_key_i / new_value_i [B, kvHeads_i, S, cacheHeadDim_i] — row b's positions
   * max(0, seqlens_k[b] + 1 - S) onwards — which the caller writes into its cache itself.
   * onnxruntime-node copies every fetched output into a fresh JavaScript array, so a whole-cache
   * output costs a copy of the cache per run (docs/architecture.md, "KV cache"); 'new' makes that
   * copy S positions per row. GQA then fills an arena buffer of its own from past_* instead of
   * writing into it.
   */
  cacheOutputs?: CacheOutputs;
}

export type CacheOutputs = 'present' | 'new';

/** One attention layer's cache: names of its graph inputs/outputs and its buffer geometry. */
export interface KvCacheLayout {
  layer: number;
  kvHeads: number;
  /** Head width in the cache: headDim rounded up to GQA's multiple of 16 on CPU. */
  cacheHeadDim: number;
  pastKey: string;
  pastValue: string;
  presentKey: string;
  presentValue: string;
  /** Outputs of a cacheOutputs 'new' graph: the positions one run added. */
  newKey: string;
  newValue: string;
}

export interface DecoderGraph {
  model: OnnxModel;
  kvLayers: KvCacheLayout[];
  dtype: FloatType;
  /** Set when projections run as MatMulNBits. */
  weights?: WeightQuantization;
  /** With `weights`: matrices run from the checkpoint's own blocks, and matrices quantized here. */
  weightBlocks?: { fromFile: number; quantized: number };
  maxContext: number;
  logits: 'last' | 'all';
  /** Built with packedTokens: input_ids [1, T] plus pack_index, unpack_index, logit_index. */
  packedTokens: boolean;
  /** Whether the cache leaves the graph whole (present_*) or as the new positions only (new_*). */
  cacheOutputs: CacheOutputs;
}

export function buildDecoderGraph(spec: ModelSpec, weights: Weights, options: DecoderGraphOptions): DecoderGraph {
  const g = new OnnxGraphBuilder('decoder');
  const w = (name: string): Tensor => {
    const t = weights.get(name);
    if (!t) throw new Error(`weight '${name}' missing while building the graph`);
    return t;
  };
  const M = options.maxContext;
  const dtype = options.dtype ?? 'float32';
  const T = floatTypeCode(dtype);
  const init = (name: string, dims: number[], data: Float32Array): string => g.tensorInitializer(name, dims, data, dtype);
  if (options.weights && dtype !== 'float32') throw new RangeError(`${options.weights} weights run with float32 activations, not ${dtype}`);
  const bits = options.weights ? bitsOf(options.weights) : undefined;
  const blockSize = options.blockSize ?? blockSizeSetting();
  const weightBlocks = { fromFile: 0, quantized: 0 };
  /** The checkpoint's blocks of `tensors` stacked, when they hold exactly `w` [n, k] in this graph's block form. */
  const blocksFromFile = (tensors: readonly string[], n: number, k: number, w: Float32Array): BlockQuantizedMatrix | undefined => {
    const parts = tensors.map((t) => options.fileBlocks?.get(t));
    if (parts.some((q) => q === undefined || q.bits !== bits || q.blockSize !== blockSize || q.k !== k)) return undefined;
    const q = stackBlockRows(parts as BlockQuantizedMatrix[]);
    return q.n === n && holdsExactly(q, w) ? q : undefined;
  };
  /**
   * x · Wᵀ for a weight W [n, k] (the rows of `tensors` stacked): a MatMul over the transposed
   * float matrix, or MatMulNBits over W itself (its rows are what blocks run along). Both forms
   * are made lazily: only one is needed.
   */
  const linear = (x: string, name: string, tensors: readonly string[], n: number, k: number, rows: () => Float32Array, transposed: () => Float32Array, output?: string): string => {
    if (bits === undefined) return g.node('MatMul', [x, init(name, [k, n], transposed())], output ? [output] : 1)[0]!;
    checkQuantizable(tensors[0]!, k, bits, blockSize);
    const w = rows();
    const fromFile = blocksFromFile(tensors, n, k, w);
    weightBlocks[fromFile ? 'fromFile' : 'quantized']++;
    return matMulNBits(g, x, name, fromFile ?? quantizeMatrix(w, n, k, bits, blockSize), output);
  };

  const packedTokens = options.logits === 'last' && options.packedTokens === true;
  const ids = g.input('input_ids', DataType.int64, packedTokens ? [1, 'tokens'] : ['batch', 'seq']);
  let h = g.op('Gather', [init('embed', w(weightName.embed).shape, w(weightName.embed).data), ids], { axis: { i: 0 } });
  const seqlensK = g.input('seqlens_k', DataType.int32, ['batch']);
  const totalLen = g.input('total_sequence_length', DataType.int32, []);
  // Packed tokens [1, T, C] ↔ attention's [B, S, C] (see DecoderGraphOptions.packedTokens).
  let toRows = (x: string, _width: number): string => x;
  let fromRows = (x: string, _width: number): string => x;
  let logitIndex = '';
  if (packedTokens) {
    const packIndex = g.input('pack_index', DataType.int64, ['batch_seq']);
    const unpackIndex = g.input('unpack_index', DataType.int64, ['tokens']);
    logitIndex = g.input('logit_index', DataType.int64, ['batch']);
    const batch = g.op('Shape', [seqlensK]);
    const shapes = new Map<string, string>();
    const shape = (name: string, make: () => string) => shapes.get(name) ?? (shapes.set(name, make()), shapes.get(name)!);
    const rowsShape = (width: number) => shape(`rows_${width}`, () => g.op('Concat', [batch, g.int64Initializer(`rows_${width}`, [-1, width])], { axis: { i: 0 } }));
    const tokensShape = (width: number) => shape(`tokens_${width}`, () => g.int64Initializer(`tokens_${width}`, [1, -1, width]));
    toRows = (x, width) => g.op('Reshape', [g.op('Gather', [x, packIndex], { axis: { i: 1 } }), rowsShape(width)]);
    fromRows = (x, width) => g.op('Gather', [g.op('Reshape', [x, tokensShape(width)]), unpackIndex], { axis: { i: 1 } });
  }

  const plainNorm = (x: string, gammaName: string, initName: string): string =>
    g.op('SimplifiedLayerNormalization', [x, init(initName, [spec.hidden], w(gammaName).data)], {
      axis: { i: -1 },
      epsilon: { f: spec.normEps },
      stash_type: { i: 1 },
    });
  /**
   * The residual stream: `h` plus, with fuseResidualNorm, a sub-block output not yet added to it.
   * The next norm adds it (SkipSimplifiedLayerNormalization: normalised sum and sum in one node).
   */
  let pending: string | undefined;
  const addResidual = (delta: string): void => {
    if (!options.fuseResidualNorm) h = g.op('Add', [h, delta]);
    else {
      settle();
      pending = delta;
    }
  };
  const settle = (): void => {
    if (pending === undefined) return;
    h = g.op('Add', [h, pending]);
    pending = undefined;
  };
  /** RMSNorm of the residual stream (adding a pending sub-block output first, in the same node). */
  const rmsNorm = (gammaName: string, initName: string): string => {
    if (pending === undefined) return plainNorm(h, gammaName, initName);
    const [normed, sum] = [`${initName}.out`, `${initName}.sum`];
    g.node('SkipSimplifiedLayerNormalization', [h, pending, init(initName, [spec.hidden], w(gammaName).data)], [normed, '', '', sum], { epsilon: { f: spec.normEps } }, 'com.microsoft');
    h = sum;
    pending = undefined;
    return normed;
  };

  const ropeTables = ropeTableInitializers(g, spec.rope, M, dtype);
  const kvLayers: KvCacheLayout[] = [];
  const cacheOutputs = options.cacheOutputs ?? 'present';
  /**
   * GatherElements indices picking, from a present cache [B, kvHeads, capacity, Dp], the positions
   * this run wrote: row b's max(0, seqlens_k[b] + 1 - S) + s for s < S (S = the run's attention
   * length, taken from the first attention layer's input; fresh right-padded prompts start at 0).
   */
  let newPositions: string | undefined;
  const newPositionIndex = new Map<string, string>();
  const newIndex = (qkv: string, kvHeads: number, Dp: number): string => {
    if (newPositions === undefined) {
      const S = g.op('Shape', [qkv], { start: { i: 1 }, end: { i: 2 } });
      const zero = g.int64Initializer('new_pos_zero', [0]);
      const one = g.int64Initializer('new_pos_one', [1]);
      const start = g.op('Max', [g.op('Sub', [g.op('Add', [g.op('Cast', [seqlensK], { to: { i: DataType.int64 } }), one]), S]), zero]);
      const axis0 = g.int64Initializer('new_pos_axis0', [0]);
      const scalar = (x: string) => g.op('Squeeze', [x, axis0]);
      const steps = g.op('Range', [scalar(zero), scalar(S), scalar(one)]);
      const index = g.op('Add', [g.op('Unsqueeze', [start, one]), steps]);
      newPositions = g.op('Unsqueeze', [index, g.int64Initializer('new_pos_axes', [1, 3])]);
    }
    const key = `${kvHeads}x${Dp}`;
    if (!newPositionIndex.has(key)) newPositionIndex.set(key, g.op('Expand', [newPositions, g.int64Initializer(`new_pos_shape_${key}`, [1, kvHeads, 1, Dp])]));
    return newPositionIndex.get(key)!;
  };

  spec.layers.forEach((layer, i) => {
    if (layer.heads > 0) {
      const D = layer.headDim;
      const Dp = paddedHeadDim(D);
      const [cos, sin] = ropeTables(D);
      const x = rmsNorm(weightName.attnNorm(i), `l${i}.attn_norm`);
      const qkvRows = (layer.heads + 2 * layer.kvHeads) * Dp;
      const packed = () => packQkv(w(weightName.q(i)), w(weightName.k(i)), w(weightName.v(i)), layer.heads, layer.kvHeads, D, Dp);
      const qkv = toRows(linear(x, `l${i}.qkv`, [weightName.q(i), weightName.k(i), weightName.v(i)], qkvRows, spec.hidden, packed, () => transpose({ shape: [qkvRows, spec.hidden], data: packed() })), qkvRows);
      const cache: KvCacheLayout = {
        layer: i,
        kvHeads: layer.kvHeads,
        cacheHeadDim: Dp,
        pastKey: `past_key_${i}`,
        pastValue: `past_value_${i}`,
        presentKey: `present_key_${i}`,
        presentValue: `present_value_${i}`,
        newKey: `new_key_${i}`,
        newValue: `new_value_${i}`,
      };
      kvLayers.push(cache);
      // Capacity is symbolic: the cache grows with the longest live sequence (engine/kv-cache.ts).
      const cacheDims = ['batch', layer.kvHeads, 'kv_capacity', Dp];
      g.input(cache.pastKey, T, cacheDims);
      g.input(cache.pastValue, T, cacheDims);
      const whole = cacheOutputs === 'present';
      const [attn, presentKey, presentValue] = g.node(
        'GroupQueryAttention',
        [qkv, '', '', cache.pastKey, cache.pastValue, seqlensK, totalLen, cos, sin],
        [`l${i}.attn`, whole ? cache.presentKey : `l${i}.present_key`, whole ? cache.presentValue : `l${i}.present_value`],
        {
          num_heads: { i: layer.heads },
          kv_num_heads: { i: layer.kvHeads },
          scale: { f: 1 / Math.sqrt(D) },
          do_rotary: { i: 1 },
          rotary_interleaved: { i: 0 },
        },
        'com.microsoft',
      );
      if (whole) {
        g.output(cache.presentKey, T, cacheDims);
        g.output(cache.presentValue, T, cacheDims);
      } else {
        const index = newIndex(qkv, layer.kvHeads, Dp);
        g.node('GatherElements', [presentKey!, index], [cache.newKey], { axis: { i: 2 } });
        g.node('GatherElements', [presentValue!, index], [cache.newValue], { axis: { i: 2 } });
        const newDims = ['batch', layer.kvHeads, 'new_positions', Dp];
        g.output(cache.newKey, T, newDims);
        g.output(cache.newValue, T, newDims);
      }
      const oT = () => padRowsTransposedO(w(weightName.o(i)), layer.heads, D, Dp);
      const oRows = () => (D === Dp ? w(weightName.o(i)).data : transpose({ shape: [layer.heads * Dp, spec.hidden], data: oT() }));
      const attnOut = linear(fromRows(attn!, layer.heads * Dp), `l${i}.o`, [weightName.o(i)], spec.hidden, layer.heads * Dp, oRows, oT);
      addResidual(attnOut);
    }
    if (layer.ffn > 0) {
      const x = rmsNorm(weightName.mlpNorm(i), `l${i}.mlp_norm`);
      const proj = (x: string, name: string, weight: string): string => {
        const t = w(weight);
        return linear(x, name, [weight], t.shape[0]!, t.shape[1]!, () => t.data, () => transpose(t));
      };
      let gate: string;
      let up: string;
      if (options.fuseGateUp) {
        // One projection over the gate rows stacked on the up rows, split after: one node (and
        // one quantization of x) instead of two.
        const F = layer.ffn;
        const rows = () => concatFloat32([w(weightName.gate(i)).data, w(weightName.up(i)).data]);
        const both = linear(x, `l${i}.gate_up`, [weightName.gate(i), weightName.up(i)], 2 * F, spec.hidden, rows, () => transpose({ shape: [2 * F, spec.hidden], data: rows() }));
        [gate, up] = g.node('Split', [both, g.int64Initializer(`l${i}.gate_up_split`, [F, F])], 2, { axis: { i: -1 } }) as [string, string];
      } else {
        gate = proj(x, `l${i}.gate`, weightName.gate(i));
        up = proj(x, `l${i}.up`, weightName.up(i));
      }
      const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
      const down = proj(act, `l${i}.down`, weightName.down(i));
      addResidual(down);
    }
  });
  settle();

  if (packedTokens) {
    // Row b's logits: packed token logit_index[b]; [1, B, hidden] → [B, 1, hidden].
    h = g.op('Transpose', [g.op('Gather', [h, logitIndex], { axis: { i: 1 } })], { perm: { ints: [1, 0, 2] } });
  } else if (options.logits === 'last') {
    // Only the final position's logits are needed to sample: skip the vocab projection elsewhere.
    h = g.op('Slice', [h, g.int64Initializer('last_start', [-1]), g.int64Initializer('last_end', [2 ** 62]), g.int64Initializer('seq_axis', [1])]);
  }
  h = plainNorm(h, weightName.finalNorm, 'final_norm');
  const head = spec.tiedEmbeddings ? w(weightName.embed) : w(weightName.lmHead);
  const headName = spec.tiedEmbeddings ? weightName.embed : weightName.lmHead;
  const lmHead = (output?: string) => linear(h, 'lm_head', [headName], spec.vocabSize, spec.hidden, () => head.data, () => transpose(head), output);
  if (dtype === 'float32') lmHead('logits');
  else g.node('Cast', [lmHead()], ['logits'], { to: { i: DataType.float } });
  g.output('logits', DataType.float, ['batch', options.logits === 'last' ? 1 : 'seq', spec.vocabSize]);

  return {
    model: g.toModel({ '': 21, 'com.microsoft': 1 }),
    kvLayers,
    dtype,
    ...(options.weights && { weights: options.weights, weightBlocks }),
    maxContext: M,
    logits: options.logits,
    packedTokens,
    cacheOutputs,
  };
}

/** [rows, cols] → [cols, rows] (ONNX MatMul multiplies activations by W^T), in cache-friendly tiles. */
export function transpose(t: Tensor): Float32Array {
  const [rows, cols] = t.shape as [number, number];
  const src = t.data;
  const out = new Float32Array(rows * cols);
  const B = 32;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(r0 + B, rows);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(c0 + B, cols);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = src[r * cols + c]!;
    }
  }
  return out;
}

/**
 * Where dimension d of a head lands in a head padded from D to Dp: the two rotate-half halves go
 * to [0, D/2) and [Dp/2, Dp/2 + D/2), so GQA's rotate-half over Dp pairs the right dimensions and
 * the zero padding never mixes in.
 */
export function paddedIndex(d: number, D: number, Dp: number): number {
  return d < D / 2 ? d : Dp / 2 + (d - D / 2);
}

/** Rows grouped in heads of D ([nHeads*D, width]) → heads of Dp rows, padding rows left zero. */
export function padHeadRows(src: Float32Array, nHeads: number, width: number, D: number, Dp: number): Float32Array {
  if (D === Dp) return src;
  const out = new Float32Array(nHeads * Dp * width);
  for (let h = 0; h < nHeads; h++) {
    for (let d = 0; d < D; d++) {
      const from = (h * D + d) * width;
      out.set(src.subarray(from, from + width), (h * Dp + paddedIndex(d, D, Dp)) * width);
    }
  }
  return out;
}

/** Q, K, V ([heads*D, hidden] each) → one head-padded [(H + 2KV) * Dp, hidden] matrix. */
export function packQkv(q: Tensor, k: Tensor, v: Tensor, heads: number, kvHeads: number, D: number, Dp: number): Float32Array {
  const hidden = q.shape[1]!;
  const rows = (heads + 2 * kvHeads) * Dp;
  const packed = new Float32Array(rows * hidden);
  packed.set(padHeadRows(q.data, heads, hidden, D, Dp), 0);
  packed.set(padHeadRows(k.data, kvHeads, hidden, D, Dp), heads * Dp * hidden);
  packed.set(padHeadRows(v.data, kvHeads, hidden, D, Dp), (heads + kvHeads) * Dp * hidden);
  return packed;
}

/** The same, transposed to [hidden, (H + 2KV) * Dp] (what a float MatMul multiplies by). */
export function packQkvTransposed(q: Tensor, k: Tensor, v: Tensor, heads: number, kvHeads: number, D: number, Dp: number): Float32Array {
  const rows = (heads + 2 * kvHeads) * Dp;
  return transpose({ shape: [rows, q.shape[1]!], data: packQkv(q, k, v, heads, kvHeads, D, Dp) });
}

/** W_O [hidden, heads*D] → transposed and head-padded [heads*Dp, hidden]; padded rows are zero. */
export function padRowsTransposedO(o: Tensor, heads: number, D: number, Dp: number): Float32Array {
  const hidden = o.shape[0]!;
  return padHeadRows(transpose(o), heads, hidden, D, Dp);
}
