import { type LayerSpec, type ModelSpec, weightName } from '../model/spec.ts';
import type { Tensor, Weights } from '../model/tensor.ts';
import { CalibrationAttention, type CalibrationAttentionKind } from './calibration-attention.ts';
import { weightLookup } from './graph-weights.ts';
import { LazyConstants } from './lazy-constants.ts';
import { DataType, type OnnxModel, OnnxGraphBuilder } from './onnx-model.ts';
import { rmsNormNode } from './rms-norm.ts';
import { transpose } from './weight-packing.ts';

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
   * 'plain' (MatMul/Softmax ops on unpadded heads). Same result to ~1e-5 and about the same speed
   * (docs/architecture.md); GQA is the default because 'plain' materialises the [B, H, T, T]
   * scores and a [maxSeqLen²] causal mask, which grows badly with long calibration sequences.
   */
  attention?: CalibrationAttentionKind;
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
  const weight = weightLookup(weights, 'the calibration graph');
  const H = spec.hidden;
  const ids = g.input(calibrationGraphIo.inputIds, DataType.int64, ['batch', 'seq']);
  let h = g.op('Gather', [g.floatInitializer('embed', weight(weightName.embed).shape, weight(weightName.embed).data), ids], { axis: { i: 0 } });
  const constants = new LazyConstants(g);
  const attention = new CalibrationAttention(g, spec, weight, ids, constants, options.maxSeqLen, options.attention ?? 'gqa');
  const blocks = new CalibrationBlocks(g, spec, weight, constants, attention);

  const layers = spec.layers.map((layer, i) => {
    const io: CalibrationLayerIo = { layer: i, kvHeads: layer.kvHeads, ffn: layer.ffn, layerCosSum: `layer_cos_sum_${i}` };
    const hIn = h;
    if (layer.heads > 0) h = blocks.attention(i, layer, h, io);
    if (layer.ffn > 0) h = blocks.mlp(i, layer, h, io);
    blocks.cosSum(hIn, h, io.layerCosSum);
    return io;
  });

  rmsNormNode(g, h, g.floatInitializer('final_norm', [H], weight(weightName.finalNorm).data), spec.normEps, calibrationGraphIo.finalHidden);
  g.output(calibrationGraphIo.finalHidden, DataType.float, ['batch', 'seq', H]);
  const head = spec.tiedEmbeddings ? weight(weightName.embed) : weight(weightName.lmHead);
  g.node('MatMul', [calibrationGraphIo.finalHidden, g.floatInitializer('lm_head', [H, spec.vocabSize], transpose(head))], [calibrationGraphIo.logits]);
  g.output(calibrationGraphIo.logits, DataType.float, ['batch', 'seq', spec.vocabSize]);

  return { model: g.toModel({ '': 21, 'com.microsoft': 1 }), layers, maxSeqLen: options.maxSeqLen };
}

/** The calibration graph's sub-blocks, each with its mask inputs and tap outputs (see above). */
class CalibrationBlocks {
  constructor(
    private readonly g: OnnxGraphBuilder,
    private readonly spec: ModelSpec,
    private readonly weight: (name: string) => Tensor,
    private readonly constants: LazyConstants,
    private readonly attentionKernel: CalibrationAttention,
  ) {}

  /** Layer i's attention: masked per KV group and as a whole; returns the stream after it. */
  attention(i: number, layer: LayerSpec, h: string, io: CalibrationLayerIo): string {
    const { g, constants } = this;
    const KV = layer.kvHeads;
    const G = layer.heads / KV;
    const x = this.norm(h, weightName.attnNorm(i), `l${i}.attn_norm`);
    const { perGroup, oT, Dh } = this.attentionKernel.grouped(i, x, layer.headDim, KV, G);
    const contrib = g.op('MatMul', [perGroup, g.floatInitializer(`l${i}.o`, [KV, G * Dh, this.spec.hidden], oT)]); // [KV, B·T, hidden]
    io.kvNormSum = `kv_norm_sum_${i}`;
    g.node('ReduceSum', [g.op('ReduceL2', [contrib, constants.axes(-1)], { keepdims: { i: 0 } }), constants.axes(1)], [io.kvNormSum], { keepdims: { i: 0 } });
    g.output(io.kvNormSum, DataType.float, [KV]);

    io.kvMask = g.input(`kv_mask_${i}`, DataType.float, [KV]);
    io.attnMask = g.input(`attn_mask_${i}`, DataType.float, [1]);
    const groupMask = g.op('Reshape', [io.kvMask, g.int64Initializer(`l${i}.kv_mask_shape`, [KV, 1, 1])]);
    const summed = g.op('ReduceSum', [g.op('Mul', [contrib, groupMask]), constants.axes(0)], { keepdims: { i: 0 } }); // [B·T, hidden]
    const attnOut = g.op('Mul', [g.op('Reshape', [summed, g.op('Shape', [h])]), io.attnMask]);
    const hMid = g.op('Add', [h, attnOut]);
    io.attnCosSum = this.cosSum(h, hMid, `attn_cos_sum_${i}`);
    return hMid;
  }

  /** Layer i's MLP: masked per neuron and as a whole; returns the stream after it. */
  mlp(i: number, layer: LayerSpec, h: string, io: CalibrationLayerIo): string {
    const { g, constants, weight } = this;
    const H = this.spec.hidden;
    const x = this.norm(h, weightName.mlpNorm(i), `l${i}.mlp_norm`);
    const gate = g.op('MatMul', [x, g.floatInitializer(`l${i}.gate`, [H, layer.ffn], transpose(weight(weightName.gate(i))))]);
    const up = g.op('MatMul', [x, g.floatInitializer(`l${i}.up`, [H, layer.ffn], transpose(weight(weightName.up(i))))]);
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    io.ffnAbsSum = `ffn_abs_sum_${i}`;
    g.node('ReduceSum', [g.op('Abs', [act]), constants.axes(0, 1)], [io.ffnAbsSum], { keepdims: { i: 0 } });
    g.output(io.ffnAbsSum, DataType.float, [layer.ffn]);

    io.ffnMask = g.input(`ffn_mask_${i}`, DataType.float, [layer.ffn]);
    io.mlpMask = g.input(`mlp_mask_${i}`, DataType.float, [1]);
    const down = g.op('MatMul', [g.op('Mul', [act, io.ffnMask]), g.floatInitializer(`l${i}.down`, [layer.ffn, H], transpose(weight(weightName.down(i))))]);
    const hOut = g.op('Add', [h, g.op('Mul', [down, io.mlpMask])]);
    io.mlpCosSum = this.cosSum(h, hOut, `mlp_cos_sum_${i}`);
    return hOut;
  }

  /** Σ over every token of cos(a_t, b_t), a scalar output. */
  cosSum(a: string, b: string, name: string): string {
    const { g, constants } = this;
    const dot = g.op('ReduceSum', [g.op('Mul', [a, b]), constants.axes(-1)], { keepdims: { i: 0 } });
    const na = g.op('ReduceL2', [a, constants.axes(-1)], { keepdims: { i: 0 } });
    const nb = g.op('ReduceL2', [b, constants.axes(-1)], { keepdims: { i: 0 } });
    const tiny = constants.once('tiny', () => g.floatInitializer('tiny', [], Float32Array.of(1e-30)));
    const cos = g.op('Div', [dot, g.op('Max', [g.op('Mul', [na, nb]), tiny])]);
    g.node('ReduceSum', [cos], [name], { keepdims: { i: 0 } });
    g.output(name, DataType.float, []);
    return name;
  }

  private norm(x: string, gammaName: string, initName: string): string {
    return rmsNormNode(this.g, x, this.g.floatInitializer(initName, [this.spec.hidden], this.weight(gammaName).data), this.spec.normEps);
  }
}
