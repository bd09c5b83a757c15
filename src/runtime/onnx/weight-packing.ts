import type { Tensor } from '../model/tensor.ts';

/**
 * Weights laid out as the graphs multiply them: transposed for a float MatMul, and attention heads
 * padded from D to GroupQueryAttention's multiple Dp (head-padding.ts) with zero rows placed so the
 * rotate-half RoPE still pairs the right dimensions. Shared by the decoder and calibration graphs.
 */

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

/** Q, K, V biases ([heads*D], [kvHeads*D] twice) → one head-padded [(H + 2KV) * Dp] vector, laid out like packQkv's rows. */
export function packQkvBias(q: Tensor, k: Tensor, v: Tensor, heads: number, kvHeads: number, D: number, Dp: number): Float32Array {
  return packQkv({ shape: [heads * D, 1], data: q.data }, { shape: [kvHeads * D, 1], data: k.data }, { shape: [kvHeads * D, 1], data: v.data }, heads, kvHeads, D, Dp);
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
