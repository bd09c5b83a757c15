/**
 * RoPE row layouts of the Q and K projections. RoPE rotates pairs of dimensions within each head:
 *   interleaved (llama2.c, Meta's original, GGUF): pairs (2i, 2i+1)
 *   rotate-half (Hugging Face, our in-memory layout): pairs (i, i + headDim/2)
 * Converting a checkpoint only reorders the output rows of Wq/Wk inside each head, so q·k (and
 * hence the model) is unchanged. Per head, with half = headDim/2:
 *   rotate-half row j        = interleaved row 2j
 *   rotate-half row j + half = interleaved row 2j + 1
 * This is what transformers' convert_llama_weights_to_hf.py `permute` does
 * (view(heads, half, 2, in).transpose(1, 2)); llama.cpp's convert_hf_to_gguf.py `permute` is the
 * inverse (view(heads, 2, half, in).swapaxes(1, 2)).
 */
import type { Tensor } from './tensor.ts';

/** Interleaved -> rotate-half for a [heads * headDim, cols] projection. Returns a new tensor. */
export function interleavedToRotateHalf(t: Tensor, heads: number): Tensor {
  return permuteRows(t, heads, true);
}

/** Rotate-half -> interleaved (the inverse of interleavedToRotateHalf). Returns a new tensor. */
export function rotateHalfToInterleaved(t: Tensor, heads: number): Tensor {
  return permuteRows(t, heads, false);
}

function permuteRows(t: Tensor, heads: number, toRotateHalf: boolean): Tensor {
  const [rows, cols] = t.shape;
  if (t.shape.length !== 2 || rows === undefined || cols === undefined) {
    throw new Error(`RoPE layout: expected a 2-D projection, got shape [${t.shape}]`);
  }
  const order = ropeRowOrder(rows, heads, toRotateHalf);
  const out = new Float32Array(t.data.length);
  for (let r = 0; r < rows; r++) out.set(t.data.subarray(order[r]! * cols, (order[r]! + 1) * cols), r * cols);
  return { shape: [rows, cols], data: out };
}

/**
 * Where each row of a [heads * headDim, ·] Q/K projection comes from when it changes RoPE layout:
 * row r of the result is row order[r] of the source (toRotateHalf: interleaved → rotate-half).
 * Quantized matrices move their rows (and so their blocks) the same way.
 */
export function ropeRowOrder(rows: number, heads: number, toRotateHalf: boolean): Int32Array {
  if (heads <= 0 || rows % heads !== 0 || (rows / heads) % 2 !== 0) {
    throw new Error(`RoPE layout: ${rows} rows do not split into ${heads} heads of even width`);
  }
  const headDim = rows / heads;
  const half = headDim / 2;
  const order = new Int32Array(rows);
  for (let h = 0; h < heads; h++) {
    const base = h * headDim;
    for (let j = 0; j < half; j++) {
      for (const c of [0, 1]) {
        const rotateHalfRow = base + j + c * half;
        const interleavedRow = base + 2 * j + c;
        if (toRotateHalf) order[rotateHalfRow] = interleavedRow;
        else order[interleavedRow] = rotateHalfRow;
      }
    }
  }
  return order;
}
