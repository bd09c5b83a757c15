import { type LayerSpec, type ModelSpec, weightName } from '../model/spec.ts';
import type { Tensor } from '../model/tensor.ts';
import type { DecoderProjections } from './decoder-projections.ts';
import { paddedHeadDim } from './head-padding.ts';
import { DataType, type DataTypeCode, type OnnxGraphBuilder } from './onnx-model.ts';
import type { TokenLayout } from './packed-tokens.ts';
import type { ResidualStream } from './residual-stream.ts';
import { packQkv, packQkvBias, padRowsTransposedO, transpose } from './weight-packing.ts';

/** What the decoder graph returns of the cache (DecoderGraphOptions.cacheOutputs). */
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

/** What the attention blocks of one decoder graph share. */
export interface DecoderAttentionContext {
  g: OnnxGraphBuilder;
  spec: ModelSpec;
  weight: (name: string) => Tensor;
  projections: DecoderProjections;
  tokens: TokenLayout;
  /** [cos, sin] initializers for a head size. */
  ropeTables: (headDim: number) => [string, string];
  seqlensK: string;
  totalLen: string;
  cacheOutputs: CacheOutputs;
  /** Element type of the cache. */
  cacheType: DataTypeCode;
}

/**
 * The decoder's attention blocks: RMSNorm, the packed QKV projection (+ its bias, Qwen2), GroupQueryAttention (fused
 * RoPE, causal, over a cache updated in place) and the output projection, added to the residual
 * stream. Heads are padded to GQA's multiple (weight-packing.ts); the cache's inputs and outputs
 * of every layer are collected in `kvLayers`.
 */
export class DecoderAttention {
  readonly kvLayers: KvCacheLayout[] = [];
  /** Positions this run wrote (cacheOutputs 'new'), made on first use; then one index per cache shape. */
  private newPositions: string | undefined;
  private readonly newPositionIndex = new Map<string, string>();

  constructor(private readonly c: DecoderAttentionContext) {}

  /** Layer i's attention sub-block. */
  add(i: number, layer: LayerSpec, residual: ResidualStream): void {
    const { spec, weight, projections, tokens } = this.c;
    const D = layer.headDim;
    const Dp = paddedHeadDim(D);
    const [cos, sin] = this.c.ropeTables(D);
    const x = residual.norm(weightName.attnNorm(i), `l${i}.attn_norm`);
    const qkvRows = (layer.heads + 2 * layer.kvHeads) * Dp;
    const packed = () => packQkv(weight(weightName.q(i)), weight(weightName.k(i)), weight(weightName.v(i)), layer.heads, layer.kvHeads, D, Dp);
    let qkvOut = projections.linear(x, `l${i}.qkv`, [weightName.q(i), weightName.k(i), weightName.v(i)], qkvRows, spec.hidden, packed, () => transpose({ shape: [qkvRows, spec.hidden], data: packed() }));
    if (spec.attentionBias) {
      qkvOut = projections.addBias(qkvOut, `l${i}.qkv_bias`, packQkvBias(weight(weightName.qBias(i)), weight(weightName.kBias(i)), weight(weightName.vBias(i)), layer.heads, layer.kvHeads, D, Dp));
    }
    const qkv = tokens.toRows(qkvOut, qkvRows);
    const cache = cacheLayout(i, layer.kvHeads, Dp);
    this.kvLayers.push(cache);
    const attn = this.groupQueryAttention(i, layer, qkv, cache, cos, sin);
    const oT = () => padRowsTransposedO(weight(weightName.o(i)), layer.heads, D, Dp);
    const oRows = () => (D === Dp ? weight(weightName.o(i)).data : transpose({ shape: [layer.heads * Dp, spec.hidden], data: oT() }));
    residual.add(projections.linear(tokens.fromRows(attn, layer.heads * Dp), `l${i}.o`, [weightName.o(i)], spec.hidden, layer.heads * Dp, oRows, oT));
  }

  /** GQA over the layer's cache inputs; its cache outputs are the whole cache or the new positions. */
  private groupQueryAttention(i: number, layer: LayerSpec, qkv: string, cache: KvCacheLayout, cos: string, sin: string): string {
    const { g, seqlensK, totalLen, cacheType: T } = this.c;
    const Dp = cache.cacheHeadDim;
    // Capacity is symbolic: the cache grows with the longest live sequence (engine/kv-cache.ts).
    const cacheDims = ['batch', layer.kvHeads, 'kv_capacity', Dp];
    g.input(cache.pastKey, T, cacheDims);
    g.input(cache.pastValue, T, cacheDims);
    const whole = this.c.cacheOutputs === 'present';
    const [attn, presentKey, presentValue] = g.node(
      'GroupQueryAttention',
      [qkv, '', '', cache.pastKey, cache.pastValue, seqlensK, totalLen, cos, sin],
      [`l${i}.attn`, whole ? cache.presentKey : `l${i}.present_key`, whole ? cache.presentValue : `l${i}.present_value`],
      {
        num_heads: { i: layer.heads },
        kv_num_heads: { i: layer.kvHeads },
        scale: { f: 1 / Math.sqrt(layer.headDim) },
        do_rotary: { i: 1 },
        rotary_interleaved: { i: 0 },
      },
      'com.microsoft',
    );
    if (whole) {
      g.output(cache.presentKey, T, cacheDims);
      g.output(cache.presentValue, T, cacheDims);
    } else {
      const index = this.newIndex(qkv, layer.kvHeads, Dp);
      g.node('GatherElements', [presentKey!, index], [cache.newKey], { axis: { i: 2 } });
      g.node('GatherElements', [presentValue!, index], [cache.newValue], { axis: { i: 2 } });
      const newDims = ['batch', layer.kvHeads, 'new_positions', Dp];
      g.output(cache.newKey, T, newDims);
      g.output(cache.newValue, T, newDims);
    }
    return attn!;
  }

  /**
   * GatherElements indices picking, from a present cache [B, kvHeads, capacity, Dp], the positions
   * this run wrote: row b's max(0, seqlens_k[b] + 1 - S) + s for s < S (S = the run's attention
   * length, taken from the first attention layer's input; fresh right-padded prompts start at 0).
   */
  private newIndex(qkv: string, kvHeads: number, Dp: number): string {
    const { g, seqlensK } = this.c;
    if (this.newPositions === undefined) {
      const S = g.op('Shape', [qkv], { start: { i: 1 }, end: { i: 2 } });
      const zero = g.int64Initializer('new_pos_zero', [0]);
      const one = g.int64Initializer('new_pos_one', [1]);
      const start = g.op('Max', [g.op('Sub', [g.op('Add', [g.op('Cast', [seqlensK], { to: { i: DataType.int64 } }), one]), S]), zero]);
      const axis0 = g.int64Initializer('new_pos_axis0', [0]);
      const scalar = (x: string) => g.op('Squeeze', [x, axis0]);
      const steps = g.op('Range', [scalar(zero), scalar(S), scalar(one)]);
      const index = g.op('Add', [g.op('Unsqueeze', [start, one]), steps]);
      this.newPositions = g.op('Unsqueeze', [index, g.int64Initializer('new_pos_axes', [1, 3])]);
    }
    const key = `${kvHeads}x${Dp}`;
    if (!this.newPositionIndex.has(key)) this.newPositionIndex.set(key, g.op('Expand', [this.newPositions, g.int64Initializer(`new_pos_shape_${key}`, [1, kvHeads, 1, Dp])]));
    return this.newPositionIndex.get(key)!;
  }
}

function cacheLayout(layer: number, kvHeads: number, cacheHeadDim: number): KvCacheLayout {
  return {
    layer,
    kvHeads,
    cacheHeadDim,
    pastKey: `past_key_${layer}`,
    pastValue: `past_value_${layer}`,
    presentKey: `present_key_${layer}`,
    presentValue: `present_value_${layer}`,
    newKey: `new_key_${layer}`,
    newValue: `new_value_${layer}`,
  };
}
