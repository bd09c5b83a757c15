import { type ModelSpec, weightName } from '../model/spec.ts';
import type { Tensor, Weights } from '../model/tensor.ts';
import { packQkvTransposed, padRowsTransposedO, transpose } from './weight-packing.ts';
import { paddedHeadDim } from './head-padding.ts';
import { DataType, type OnnxModel, OnnxGraphBuilder } from './onnx-model.ts';
import { ropeCosSin, ropeTableInitializers } from './rope-cache.ts';

/**
 * ModelSpec + weights → an ONNX graph for analysing a model on whole sequences (no KV cache):
 * structured-pruning calibration and perplexity evaluation.
 *
 * Structures can be switched off through **mask inputs**, so one session scores any sub-network of
 * the model without a rebuild. Masking multiplies a structure's output by its mask, which for a 0
 * is exactly what removing the structure does:
 *   kv_mask_i   float [kvHeads_i]  one KV group (its key/value head and its query heads), applied
 *                                  to the group's contribution after W_O;
 *   ffn_mask_i  float [ffn_i]      one MLP neuron, applied to its activation before W_down;
 *   attn_mask_i float [1]          layer i's whole attention residual update;
 *   mlp_mask_i  float [1]          layer i's whole MLP residual update.
 * (A layer without heads / ffn has no such inputs.) All-ones masks give the plain model.
 *
 * Outputs: logits [B,T,vocab] for every position; final_hidden [B,T,hidden] (after the final
 * norm); and per layer **taps**, reduced inside the graph so they stay small. They are sums over
 * all B×T tokens (divide by the token count for a mean; sums let callers run any batch split):
 *   kv_norm_sum_i     [kvHeads]  Σ_tokens ‖Σ_{h∈g} o_h W_O[:,h]‖₂, the group's unmasked output size;
 *   ffn_abs_sum_i     [ffn]      Σ_tokens |silu(x·w_gate_j)·(x·w_up_j)|, before the neuron mask;
 *   layer_cos_sum_i   []         Σ_tokens cos(h_in, h_out) over the whole (masked) layer;
 *   attn_cos_sum_i    []         the same across the attention sub-block, and
 *   mlp_cos_sum_i     []         across the MLP sub-block.
 *
 * Attention is ORT's GroupQueryAttention without a past (prompt mode, causal), as in the decoder
 * graph, with head sizes padded for the CPU kernel (or, as an option, plain MatMul/Softmax ops).
 * Per-group outputs come from one batched MatMul [KV, B·T, G·Dh] × [KV, G·Dh, hidden] whose sum
 * over KV is the ordinary W_O projection, so the group taps and masks cost no extra FLOPs.
 */
export interface CalibrationGraphOptions {
  /** Longest sequence the graph will see (RoPE tables and the causal mask cover it). */
  maxSeqLen: number;
  /**
   * Attention kernel: 'gqa' (ORT's GroupQueryAttention, as in the serving graph; default) or
   * 'plain' (MatMul/Softmax ops on unpadded heads). Same result to ~1e-5. Measured on 2 CPU cores,
   * 4096 tokens per run: stories260K 32×128 ≈ 55–85 ms either way, a hidden-256 / head-32 model
   * ≈ 300 ms either way. GQA is the default because 'plain' materialises the [B, H, T, T] scores
   * and a [maxSeqLen²] causal mask, which grows badly with long calibration sequences.
   */
  attention?: 'gqa' | 'plain';
}

/** Names of one layer's mask inputs and tap outputs; absent where the layer has no such sub-block. */
export interface CalibrationLayerIo {
  layer: number;
  kvHeads: number;
  ffn: number;
  kvMask?: string;
  ffnMask?: string;
  attnMask?: string;
  mlpMask?: string;
  kvNormSum?: string;
  ffnAbsSum?: string;
  attnCosSum?: string;
  mlpCosSum?: string;
  layerCosSum: string;
}

export interface CalibrationGraph {
  model: OnnxModel;
  layers: CalibrationLayerIo[];
  maxSeqLen: number;
}

export const calibrationGraphIo = { inputIds: 'input_ids', logits: 'logits', finalHidden: 'final_hidden' } as const;

export function buildCalibrationGraph(spec: ModelSpec, weights: Weights, options: CalibrationGraphOptions): CalibrationGraph {
  const g = new OnnxGraphBuilder('calibration');
  const w = (name: string): Tensor => {
    const t = weights.get(name);
    if (!t) throw new Error(`weight '${name}' missing while building the calibration graph`);
    return t;
  };
  const M = options.maxSeqLen;
  const H = spec.hidden;

  const ids = g.input(calibrationGraphIo.inputIds, DataType.int64, ['batch', 'seq']);
  let h = g.op('Gather', [g.floatInitializer('embed', w(weightName.embed).shape, w(weightName.embed).data), ids], { axis: { i: 0 } });

  // Constants are made on first use: ORT warns about initializers no node reads (e.g. a model
  // whose attention was pruned away has no per-group reductions).
  const constants = new Map<string, string>();
  const axes = (...values: number[]): string => {
    const name = `axes_${values.join('_').replaceAll('-', 'm')}`;
    if (!constants.has(name)) constants.set(name, g.int64Initializer(name, values));
    return constants.get(name)!;
  };
  const tiny = (): string => {
    if (!constants.has('tiny')) constants.set('tiny', g.floatInitializer('tiny', [], Float32Array.of(1e-30)));
    return constants.get('tiny')!;
  };

  // GQA's sequence-length inputs, derived from the ids' shape: every row is a full, unpadded prompt.
  let gqaLengths: [string, string] | undefined;
  const sequenceLengths = (): [string, string] => {
    if (gqaLengths) return gqaLengths;
    const idsShape = g.op('Shape', [ids]);
    const batch = g.op('Slice', [idsShape, axes(0), axes(1)]);
    const seqLen32 = g.op('Cast', [g.op('Slice', [idsShape, axes(1), axes(2)])], { to: { i: DataType.int32 } });
    const one32 = g.initializer('one_i32', { dims: [1], dataType: DataType.int32, raw: new Uint8Array(Int32Array.of(1).buffer) });
    const seqlensK = g.op('Expand', [g.op('Sub', [seqLen32, one32]), batch]);
    const totalLen = g.op('Squeeze', [seqLen32, axes(0)]);
    gqaLengths = [seqlensK, totalLen];
    return gqaLengths;
  };

  const rmsNorm = (x: string, gammaName: string, initName: string): string =>
    g.op('SimplifiedLayerNormalization', [x, g.floatInitializer(initName, [H], w(gammaName).data)], {
      axis: { i: -1 },
      epsilon: { f: spec.normEps },
      stash_type: { i: 1 },
    });

  /** Σ over every token of cos(a_t, b_t), a scalar output. */
  const cosSum = (a: string, b: string, name: string): string => {
    const dot = g.op('ReduceSum', [g.op('Mul', [a, b]), axes(-1)], { keepdims: { i: 0 } });
    const na = g.op('ReduceL2', [a, axes(-1)], { keepdims: { i: 0 } });
    const nb = g.op('ReduceL2', [b, axes(-1)], { keepdims: { i: 0 } });
    const cos = g.op('Div', [dot, g.op('Max', [g.op('Mul', [na, nb]), tiny()])]);
    g.node('ReduceSum', [cos], [name], { keepdims: { i: 0 } });
    g.output(name, DataType.float, []);
    return name;
  };

  const attentionKind = options.attention ?? 'gqa';
  const ropeTables = ropeTableInitializers(g, spec.rope, M);
  const fullRopeTables = new Map<string, [string, string]>();
  const layers: CalibrationLayerIo[] = [];

  /** ORT's GroupQueryAttention (prompt mode), head width padded to its CPU multiple of 16. */
  const gqaAttention = (i: number, x: string, D: number, KV: number, G: number) => {
    const layer = spec.layers[i]!;
    const Dp = paddedHeadDim(D);
    const [cos, sin] = ropeTables(D);
    const [seqlensK, totalLen] = sequenceLengths();
    const qkvT = packQkvTransposed(w(weightName.q(i)), w(weightName.k(i)), w(weightName.v(i)), layer.heads, KV, D, Dp);
    const qkv = g.op('MatMul', [x, g.floatInitializer(`l${i}.qkv`, [H, (layer.heads + 2 * KV) * Dp], qkvT)]);
    const [attn] = g.node(
      'GroupQueryAttention',
      [qkv, '', '', '', '', seqlensK, totalLen, cos, sin],
      [`l${i}.attn`, `l${i}.present_key`, `l${i}.present_value`],
      { num_heads: { i: layer.heads }, kv_num_heads: { i: KV }, scale: { f: 1 / Math.sqrt(D) }, do_rotary: { i: 1 }, rotary_interleaved: { i: 0 } },
      'com.microsoft',
    );
    // [B,T,H·Dp] → [KV, B·T, G·Dp]: consecutive query heads share a KV head, so a group is a
    // contiguous slice of G·Dp columns.
    const perGroup = g.op('Transpose', [g.op('Reshape', [attn!, g.int64Initializer(`l${i}.group_shape`, [-1, KV, G * Dp])])], { perm: { ints: [1, 0, 2] } });
    return { perGroup, oT: padRowsTransposedO(w(weightName.o(i)), layer.heads, D, Dp), Dh: Dp };
  };

  /**
   * The same attention from standard ops: no head padding, one batched MatMul per product.
   */
  const plainAttention = (i: number, x: string, D: number, KV: number, G: number) => {
    const layer = spec.layers[i]!;
    const key = `${D}`;
    if (!fullRopeTables.has(key)) {
      // Full-width tables [M, D]: rotate-half pairs dimension d with d ± D/2, both at frequency d mod D/2.
      const { cos, sin } = ropeCosSin(spec.rope, D, D, M);
      const widen = (t: Float32Array) => {
        const out = new Float32Array(M * D);
        for (let p = 0; p < M; p++) for (let d = 0; d < D; d++) out[p * D + d] = t[p * (D / 2) + (d % (D / 2))]!;
        return out;
      };
      fullRopeTables.set(key, [g.floatInitializer(`rope_cos_full_${key}`, [M, D], widen(cos)), g.floatInitializer(`rope_sin_full_${key}`, [M, D], widen(sin))]);
      // rotate_half(x) = x · R
      const R = new Float32Array(D * D);
      for (let d = 0; d < D / 2; d++) {
        R[(d + D / 2) * D + d] = -1;
        R[d * D + d + D / 2] = 1;
      }
      g.floatInitializer(`rope_rot_${key}`, [D, D], R);
    }
    const [cosFull, sinFull] = fullRopeTables.get(key)!;
    const { tLen, causal } = sequenceConstants();
    const cosT = g.op('Slice', [cosFull, axes(0), tLen, axes(0)]); // [T, D]
    const sinT = g.op('Slice', [sinFull, axes(0), tLen, axes(0)]);
    const rope = (t: string) => g.op('Add', [g.op('Mul', [t, cosT]), g.op('Mul', [g.op('MatMul', [t, `rope_rot_${key}`]), sinT])]);

    const qkvT = packQkvTransposed(w(weightName.q(i)), w(weightName.k(i)), w(weightName.v(i)), layer.heads, KV, D, D);
    const qkv = g.op('MatMul', [x, g.floatInitializer(`l${i}.qkv`, [H, (layer.heads + 2 * KV) * D], qkvT)]);
    const [q, k, v] = g.node('Split', [qkv, g.int64Initializer(`l${i}.qkv_split`, [layer.heads * D, KV * D, KV * D])], 3, { axis: { i: -1 } });
    // [B,T,KV,G,D] → [B,KV,G,T,D]; keys and values [B,KV,1,T,D] broadcast over the G query heads.
    const heads = (t: string, n: number, name: string) =>
      g.op('Transpose', [g.op('Reshape', [t, g.int64Initializer(`l${i}.${name}_shape`, [0, 0, KV, n, D])])], { perm: { ints: [0, 2, 3, 1, 4] } });
    const qh = g.op('Mul', [rope(heads(q!, G, 'q')), g.floatInitializer(`l${i}.scale`, [], Float32Array.of(1 / Math.sqrt(D)))]);
    const kh = rope(heads(k!, 1, 'k'));
    const vh = heads(v!, 1, 'v');
    const scores = g.op('Add', [g.op('MatMul', [qh, g.op('Transpose', [kh], { perm: { ints: [0, 1, 2, 4, 3] } })]), causal]); // [B,KV,G,T,T]
    const out = g.op('MatMul', [g.op('Softmax', [scores], { axis: { i: -1 } }), vh]); // [B,KV,G,T,D]
    const perGroup = g.op('Reshape', [g.op('Transpose', [out], { perm: { ints: [1, 0, 3, 2, 4] } }), g.int64Initializer(`l${i}.group_shape`, [KV, -1, G * D])]);
    return { perGroup, oT: transpose(w(weightName.o(i))), Dh: D };
  };

  // T as a 1-element int64 tensor, and the causal mask [T, T] (0 on and below the diagonal).
  let seqConstants: { tLen: string; causal: string } | undefined;
  const sequenceConstants = () => {
    if (seqConstants) return seqConstants;
    const tLen = g.op('Slice', [g.op('Shape', [ids]), axes(1), axes(2)]);
    const mask = new Float32Array(M * M);
    for (let r = 0; r < M; r++) for (let c = r + 1; c < M; c++) mask[r * M + c] = -Infinity;
    const full = g.floatInitializer('causal_mask', [M, M], mask);
    const causal = g.op('Slice', [full, g.op('Concat', [axes(0), axes(0)], { axis: { i: 0 } }), g.op('Concat', [tLen, tLen], { axis: { i: 0 } }), axes(0, 1)]);
    seqConstants = { tLen, causal };
    return seqConstants;
  };

  spec.layers.forEach((layer, i) => {
    const io: CalibrationLayerIo = { layer: i, kvHeads: layer.kvHeads, ffn: layer.ffn, layerCosSum: `layer_cos_sum_${i}` };
    const hIn = h;
    if (layer.heads > 0) {
      const D = layer.headDim;
      const KV = layer.kvHeads;
      const G = layer.heads / KV;
      const x = rmsNorm(h, weightName.attnNorm(i), `l${i}.attn_norm`);
      // perGroup: every query head's attention output, grouped by KV head, [KV, B·T, G·Dh];
      // oT: W_O transposed to match, [KV, G·Dh, hidden] (Dh = the head width the kernel uses).
      const { perGroup, oT, Dh } = attentionKind === 'gqa' ? gqaAttention(i, x, D, KV, G) : plainAttention(i, x, D, KV, G);
      const contrib = g.op('MatMul', [perGroup, g.floatInitializer(`l${i}.o`, [KV, G * Dh, H], oT)]); // [KV, B·T, hidden]
      io.kvNormSum = `kv_norm_sum_${i}`;
      g.node('ReduceSum', [g.op('ReduceL2', [contrib, axes(-1)], { keepdims: { i: 0 } }), axes(1)], [io.kvNormSum], { keepdims: { i: 0 } });
      g.output(io.kvNormSum, DataType.float, [KV]);

      io.kvMask = g.input(`kv_mask_${i}`, DataType.float, [KV]);
      io.attnMask = g.input(`attn_mask_${i}`, DataType.float, [1]);
      const groupMask = g.op('Reshape', [io.kvMask, g.int64Initializer(`l${i}.kv_mask_shape`, [KV, 1, 1])]);
      const summed = g.op('ReduceSum', [g.op('Mul', [contrib, groupMask]), axes(0)], { keepdims: { i: 0 } }); // [B·T, hidden]
      const attnOut = g.op('Mul', [g.op('Reshape', [summed, g.op('Shape', [h])]), io.attnMask]);
      const hMid = g.op('Add', [h, attnOut]);
      io.attnCosSum = cosSum(h, hMid, `attn_cos_sum_${i}`);
      h = hMid;
    }
    if (layer.ffn > 0) {
      const hPre = h;
      const x = rmsNorm(h, weightName.mlpNorm(i), `l${i}.mlp_norm`);
      const gate = g.op('MatMul', [x, g.floatInitializer(`l${i}.gate`, [H, layer.ffn], transpose(w(weightName.gate(i))))]);
      const up = g.op('MatMul', [x, g.floatInitializer(`l${i}.up`, [H, layer.ffn], transpose(w(weightName.up(i))))]);
      const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
      io.ffnAbsSum = `ffn_abs_sum_${i}`;
      g.node('ReduceSum', [g.op('Abs', [act]), axes(0, 1)], [io.ffnAbsSum], { keepdims: { i: 0 } });
      g.output(io.ffnAbsSum, DataType.float, [layer.ffn]);

      io.ffnMask = g.input(`ffn_mask_${i}`, DataType.float, [layer.ffn]);
      io.mlpMask = g.input(`mlp_mask_${i}`, DataType.float, [1]);
      const down = g.op('MatMul', [g.op('Mul', [act, io.ffnMask]), g.floatInitializer(`l${i}.down`, [layer.ffn, H], transpose(w(weightName.down(i))))]);
      h = g.op('Add', [h, g.op('Mul', [down, io.mlpMask])]);
      io.mlpCosSum = cosSum(hPre, h, `mlp_cos_sum_${i}`);
    }
    cosSum(hIn, h, io.layerCosSum);
    layers.push(io);
  });

  g.node('SimplifiedLayerNormalization', [h, g.floatInitializer('final_norm', [H], w(weightName.finalNorm).data)], [calibrationGraphIo.finalHidden], {
    axis: { i: -1 },
    epsilon: { f: spec.normEps },
    stash_type: { i: 1 },
  });
  g.output(calibrationGraphIo.finalHidden, DataType.float, ['batch', 'seq', H]);
  const head = spec.tiedEmbeddings ? w(weightName.embed) : w(weightName.lmHead);
  g.node('MatMul', [calibrationGraphIo.finalHidden, g.floatInitializer('lm_head', [H, spec.vocabSize], transpose(head))], [calibrationGraphIo.logits]);
  g.output(calibrationGraphIo.logits, DataType.float, ['batch', 'seq', spec.vocabSize]);

  return { model: g.toModel({ '': 21, 'com.microsoft': 1 }), layers, maxSeqLen: M };
}
