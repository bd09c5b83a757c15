import { type ModelSpec, weightName } from '../model/spec.ts';
import type { Tensor } from '../model/tensor.ts';
import { paddedHeadDim } from './head-padding.ts';
import type { LazyConstants } from './lazy-constants.ts';
import { DataType, type OnnxGraphBuilder } from './onnx-model.ts';
import { ropeCosSin, ropeTableInitializers } from './rope-cache.ts';
import { packQkvBias, packQkvTransposed, padRowsTransposedO, transpose } from './weight-packing.ts';

/** Which attention kernel the calibration graph uses (CalibrationGraphOptions.attention). */
export type CalibrationAttentionKind = 'gqa' | 'plain';

/**
 * One layer's attention output grouped by KV head, ready for the per-group W_O product:
 * perGroup [KV, B·T, G·Dh] (every query head's output, grouped), oT [KV, G·Dh, hidden] (W_O
 * transposed to match), Dh the head width the kernel uses.
 */
export interface GroupedAttention {
  perGroup: string;
  oT: Float32Array;
  Dh: number;
}

/**
 * The calibration graph's attention over whole sequences (no cache, causal): ORT's
 * GroupQueryAttention in prompt mode with heads padded to its CPU multiple, or the same from
 * MatMul/Softmax ops on unpadded heads. What both need of the sequence (lengths, RoPE tables, the
 * causal mask) is made on first use.
 */
export class CalibrationAttention {
  private readonly ropeTables: (headDim: number) => [string, string];
  private readonly fullRopeTables = new Map<string, [string, string]>();
  private gqaLengths: [string, string] | undefined;
  private seqConstants: { tLen: string; causal: string } | undefined;

  constructor(
    private readonly g: OnnxGraphBuilder,
    private readonly spec: ModelSpec,
    private readonly weight: (name: string) => Tensor,
    private readonly ids: string,
    private readonly constants: LazyConstants,
    /** Longest sequence: RoPE tables and the causal mask cover it. */
    private readonly maxSeqLen: number,
    private readonly kind: CalibrationAttentionKind,
  ) {
    this.ropeTables = ropeTableInitializers(g, spec.rope, maxSeqLen);
  }

  /** Layer i's attention over the normed input x, with KV heads, G query heads per KV head. */
  grouped(i: number, x: string, D: number, KV: number, G: number): GroupedAttention {
    return this.kind === 'gqa' ? this.gqa(i, x, D, KV, G) : this.plain(i, x, D, KV, G);
  }

  /** ORT's GroupQueryAttention (prompt mode), head width padded to its CPU multiple of 16. */
  private gqa(i: number, x: string, D: number, KV: number, G: number): GroupedAttention {
    const { g, spec, weight } = this;
    const layer = spec.layers[i]!;
    const Dp = paddedHeadDim(D);
    const [cos, sin] = this.ropeTables(D);
    const [seqlensK, totalLen] = this.sequenceLengths();
    const qkv = this.qkv(i, x, KV, D, Dp);
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
    return { perGroup, oT: padRowsTransposedO(weight(weightName.o(i)), layer.heads, D, Dp), Dh: Dp };
  }

  /** The same attention from standard ops: no head padding, one batched MatMul per product. */
  private plain(i: number, x: string, D: number, KV: number, G: number): GroupedAttention {
    const { g, spec, weight, constants } = this;
    const layer = spec.layers[i]!;
    const [cosFull, sinFull, rot] = this.fullWidthRope(D);
    const { tLen, causal } = this.sequenceConstants();
    const cosT = g.op('Slice', [cosFull, constants.axes(0), tLen, constants.axes(0)]); // [T, D]
    const sinT = g.op('Slice', [sinFull, constants.axes(0), tLen, constants.axes(0)]);
    const rope = (t: string) => g.op('Add', [g.op('Mul', [t, cosT]), g.op('Mul', [g.op('MatMul', [t, rot]), sinT])]);

    const qkv = this.qkv(i, x, KV, D, D);
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
    return { perGroup, oT: transpose(weight(weightName.o(i))), Dh: D };
  }

  /** Layer i's packed Q, K, V projection of x, heads padded from D to Dp, plus its bias where the model has one. */
  private qkv(i: number, x: string, KV: number, D: number, Dp: number): string {
    const { g, spec, weight } = this;
    const heads = spec.layers[i]!.heads;
    const qkvT = packQkvTransposed(weight(weightName.q(i)), weight(weightName.k(i)), weight(weightName.v(i)), heads, KV, D, Dp);
    const product = g.op('MatMul', [x, g.floatInitializer(`l${i}.qkv`, [spec.hidden, (heads + 2 * KV) * Dp], qkvT)]);
    if (!spec.attentionBias) return product;
    const bias = packQkvBias(weight(weightName.qBias(i)), weight(weightName.kBias(i)), weight(weightName.vBias(i)), heads, KV, D, Dp);
    return g.op('Add', [product, g.floatInitializer(`l${i}.qkv_bias`, [bias.length], bias)]);
  }

  /** Full-width RoPE tables [maxSeqLen, D] and the rotate-half matrix R (rotate_half(x) = x · R), once per head size. */
  private fullWidthRope(D: number): [string, string, string] {
    const { g, spec, maxSeqLen: M } = this;
    const key = `${D}`;
    if (!this.fullRopeTables.has(key)) {
      // Rotate-half pairs dimension d with d ± D/2, both at frequency d mod D/2.
      const { cos, sin } = ropeCosSin(spec.rope, D, D, M);
      const widen = (t: Float32Array) => {
        const out = new Float32Array(M * D);
        for (let p = 0; p < M; p++) for (let d = 0; d < D; d++) out[p * D + d] = t[p * (D / 2) + (d % (D / 2))]!;
        return out;
      };
      this.fullRopeTables.set(key, [g.floatInitializer(`rope_cos_full_${key}`, [M, D], widen(cos)), g.floatInitializer(`rope_sin_full_${key}`, [M, D], widen(sin))]);
      const R = new Float32Array(D * D);
      for (let d = 0; d < D / 2; d++) {
        R[(d + D / 2) * D + d] = -1;
        R[d * D + d + D / 2] = 1;
      }
      g.floatInitializer(`rope_rot_${key}`, [D, D], R);
    }
    const [cos, sin] = this.fullRopeTables.get(key)!;
    return [cos, sin, `rope_rot_${key}`];
  }

  /** GQA's sequence-length inputs, derived from the ids' shape: every row is a full, unpadded prompt. */
  private sequenceLengths(): [string, string] {
    if (this.gqaLengths) return this.gqaLengths;
    const { g, constants } = this;
    const idsShape = g.op('Shape', [this.ids]);
    const batch = g.op('Slice', [idsShape, constants.axes(0), constants.axes(1)]);
    const seqLen32 = g.op('Cast', [g.op('Slice', [idsShape, constants.axes(1), constants.axes(2)])], { to: { i: DataType.int32 } });
    const one32 = g.initializer('one_i32', { dims: [1], dataType: DataType.int32, raw: new Uint8Array(Int32Array.of(1).buffer) });
    const seqlensK = g.op('Expand', [g.op('Sub', [seqLen32, one32]), batch]);
    const totalLen = g.op('Squeeze', [seqLen32, constants.axes(0)]);
    this.gqaLengths = [seqlensK, totalLen];
    return this.gqaLengths;
  }

  /** T as a 1-element int64 tensor, and the causal mask [T, T] (0 on and below the diagonal). */
  private sequenceConstants(): { tLen: string; causal: string } {
    if (this.seqConstants) return this.seqConstants;
    const { g, constants, maxSeqLen: M } = this;
    const tLen = g.op('Slice', [g.op('Shape', [this.ids]), constants.axes(1), constants.axes(2)]);
    const mask = new Float32Array(M * M);
    for (let r = 0; r < M; r++) for (let c = r + 1; c < M; c++) mask[r * M + c] = -Infinity;
    const full = g.floatInitializer('causal_mask', [M, M], mask);
    const causal = g.op('Slice', [full, g.op('Concat', [constants.axes(0), constants.axes(0)], { axis: { i: 0 } }), g.op('Concat', [tLen, tLen], { axis: { i: 0 } }), constants.axes(0, 1)]);
    this.seqConstants = { tLen, causal };
    return this.seqConstants;
  }
}
