import { f16ToNumber, numberToF16 } from './half.ts';

/**
 * Block-quantized weight matrices in the form ONNX Runtime's `com.microsoft.MatMulNBits` reads:
 * W [N, K] (output rows, the layout our weights are held in) cut along K into blocks of
 * `blockSize`; each block is one scale plus `blockSize` unsigned codes of `bits` bits, and
 * value = (code − 2^(bits−1)) · scale (the op's default zero point when none is given, i.e.
 * symmetric quantization). The arithmetic is ggml's reference Q8_0 / Q4_0 one, with scales rounded
 * to float16 as those formats store them, so a GGUF written as Q8_0 (or Q4_0) from the same float
 * weights holds bit-for-bit the values this runs, and a Q8_0 / Q4_0 tensor converts here without
 * passing through float.
 */

/** Weight storage asked for with --dtype: 8- or 4-bit blocks; activations and KV cache stay float. */
export type WeightQuantization = 'int8' | 'int4';

export const weightQuantizations: readonly WeightQuantization[] = ['int8', 'int4'];

export function isWeightQuantization(v: string): v is WeightQuantization {
  return (weightQuantizations as readonly string[]).includes(v);
}

export function bitsOf(q: WeightQuantization): 4 | 8 {
  return q === 'int4' ? 4 : 8;
}

/** Block length along K: ggml's 32 (what Q8_0 / Q4_0 use, and MatMulNBits' smallest fast block). */
export const DEFAULT_BLOCK_SIZE = 32;

export interface BlockQuantizedMatrix {
  bits: 4 | 8;
  blockSize: number;
  /** Output features (rows of W). */
  n: number;
  /** Input features (the dimension blocks run along). */
  k: number;
  /** [n, blocksPerRow, blockSize · bits / 8] codes; 4-bit codes pack element 2i in the low nibble. */
  codes: Uint8Array;
  /** [n · blocksPerRow] float16-representable scales, row-major. */
  scales: Float32Array;
}

export function blocksPerRow(k: number, blockSize: number): number {
  return Math.ceil(k / blockSize);
}

/** A width K that block quantization cannot serve; the message names the tensor and what would. */
export class QuantizationShapeError extends Error {
  override name = 'QuantizationShapeError';
}

/**
 * Check that a [n, k] weight can be cut into whole blocks. int8 pads a ragged last block with
 * zeros (exact, and what a pruned width needs); int4 does not: its 16 levels spend one scale per
 * block, a short block would get a scale fitted to a few values and ggml's Q4_0 (the peer's
 * format) has no ragged blocks either, so the model must be pruned to a multiple of the block.
 */
export function checkQuantizable(name: string, k: number, bits: 4 | 8, blockSize: number): void {
  if (bits === 4 && k % blockSize !== 0) {
    throw new QuantizationShapeError(
      `--dtype int4 cannot serve ${name}: its input width ${k} is not a multiple of the ${blockSize}-value block; use --dtype int8 (which pads the last block) or float32, or prune to a width that is a multiple of ${blockSize}`,
    );
  }
}

/** Quantize a row-major [n, k] float matrix (ggml Q8_0 / Q4_0 arithmetic, float16 scales). */
export function quantizeMatrix(w: Float32Array, n: number, k: number, bits: 4 | 8, blockSize = DEFAULT_BLOCK_SIZE): BlockQuantizedMatrix {
  if (w.length !== n * k) throw new RangeError(`quantizeMatrix: ${w.length} values for a [${n}, ${k}] matrix`);
  const nb = blocksPerRow(k, blockSize);
  const blob = (blockSize * bits) / 8;
  const codes = new Uint8Array(n * nb * blob);
  const scales = new Float32Array(n * nb);
  const ragged = new Float32Array(blockSize);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < nb; b++) {
      const from = r * k + b * blockSize;
      const len = Math.min(blockSize, k - b * blockSize);
      // Whole blocks are read in place; a ragged last block is copied into zeros first.
      let x = w.subarray(from, from + len);
      if (len < blockSize) {
        ragged.fill(0);
        ragged.set(x);
        x = ragged;
      }
      const at = (r * nb + b) * blob;
      scales[r * nb + b] = bits === 8 ? quantizeBlock8(x, codes, at) : quantizeBlock4(x, codes, at);
    }
  }
  return { bits, blockSize, n, k, codes, scales };
}

/** ggml quantize_row_q8_0_ref: d = amax/127, q = round-half-away(x/d); code = q + 128. Returns d as stored (f16). */
function quantizeBlock8(x: Float32Array, out: Uint8Array, at: number): number {
  let amax = 0;
  for (let j = 0; j < x.length; j++) {
    const a = Math.abs(x[j]!);
    if (a > amax) amax = a;
  }
  const d = Math.fround(amax / 127);
  const id = d !== 0 ? Math.fround(1 / d) : 0;
  for (let j = 0; j < x.length; j++) {
    const v = Math.fround(x[j]! * id);
    // roundf (half away from zero), in double arithmetic so v + 0.5 cannot round up
    out[at + j] = (v >= 0 ? Math.floor(v + 0.5) : -Math.floor(0.5 - v)) + 128;
  }
  return f16ToNumber(numberToF16(d));
}

/** ggml quantize_row_q4_0_ref: d = (signed value of largest magnitude) / −8, code = min(15, trunc(x/d + 8.5)). */
function quantizeBlock4(x: Float32Array, out: Uint8Array, at: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < x.length; j++) {
    if (Math.abs(x[j]!) > amax) {
      amax = Math.abs(x[j]!);
      max = x[j]!;
    }
  }
  const d = Math.fround(max / -8);
  const id = d !== 0 ? Math.fround(1 / d) : 0;
  for (let j = 0; j < x.length; j += 2) {
    const lo = Math.min(15, Math.trunc(Math.fround(Math.fround(x[j]! * id) + 8.5)));
    const hi = Math.min(15, Math.trunc(Math.fround(Math.fround(x[j + 1]! * id) + 8.5)));
    out[at + (j >> 1)] = lo | (hi << 4);
  }
  return f16ToNumber(numberToF16(d));
}

/** Back to float [n, k] (tests, and the quality comparison). */
export function dequantizeMatrix(q: BlockQuantizedMatrix): Float32Array {
  const { n, k, bits, blockSize } = q;
  const nb = blocksPerRow(k, blockSize);
  const blob = (blockSize * bits) / 8;
  const out = new Float32Array(n * k);
  const zero = bits === 8 ? 128 : 8;
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < k; j++) {
      const b = Math.floor(j / blockSize);
      const i = j % blockSize;
      const at = (r * nb + b) * blob;
      const code = bits === 8 ? q.codes[at + i]! : (q.codes[at + (i >> 1)]! >> ((i & 1) * 4)) & 15;
      out[r * k + j] = (code - zero) * q.scales[r * nb + b]!;
    }
  }
  return out;
}

/**
 * A checkpoint's own block-quantized matrices (GGUF Q8_0 / Q4_0), by weight name, rows in our
 * layout: the graph runs them verbatim wherever the float weights it is built from are still
 * exactly their values (the unpruned model), so a file quantized by any tool serves its own codes.
 */
export type FileBlocks = ReadonlyMap<string, BlockQuantizedMatrix>;

/** Matrices of one width and block form with their rows stacked in order (the packed QKV projection). */
export function stackBlockRows(parts: readonly BlockQuantizedMatrix[]): BlockQuantizedMatrix {
  const first = parts[0];
  if (!first) throw new RangeError('stackBlockRows: no matrices');
  if (parts.length === 1) return first;
  for (const q of parts) {
    if (q.bits !== first.bits || q.blockSize !== first.blockSize || q.k !== first.k) throw new RangeError(`stackBlockRows: a [${q.n}, ${q.k}] ${q.bits}-bit matrix does not stack under a [${first.n}, ${first.k}] ${first.bits}-bit one`);
  }
  const concat = <T extends Uint8Array | Float32Array>(arrays: T[], make: (n: number) => T): T => {
    const out = make(arrays.reduce((n, a) => n + a.length, 0));
    let at = 0;
    for (const a of arrays) {
      out.set(a, at);
      at += a.length;
    }
    return out;
  };
  return {
    bits: first.bits,
    blockSize: first.blockSize,
    n: parts.reduce((n, q) => n + q.n, 0),
    k: first.k,
    codes: concat(parts.map((q) => q.codes), (n) => new Uint8Array(n)),
    scales: concat(parts.map((q) => q.scales), (n) => new Float32Array(n)),
  };
}

/** Row r of the result is row `order[r]` of `q` (a RoPE layout change moves whole rows, hence whole blocks). */
export function permuteBlockRows(q: BlockQuantizedMatrix, order: ArrayLike<number>): BlockQuantizedMatrix {
  if (order.length !== q.n) throw new RangeError(`permuteBlockRows: ${order.length} rows for a matrix of ${q.n}`);
  const nb = blocksPerRow(q.k, q.blockSize);
  const rowBytes = (nb * q.blockSize * q.bits) / 8;
  const codes = new Uint8Array(q.codes.length);
  const scales = new Float32Array(q.scales.length);
  for (let r = 0; r < q.n; r++) {
    const src = order[r]!;
    codes.set(q.codes.subarray(src * rowBytes, (src + 1) * rowBytes), r * rowBytes);
    scales.set(q.scales.subarray(src * nb, (src + 1) * nb), r * nb);
  }
  return { ...q, codes, scales };
}

/**
 * Whether `q` dequantizes to exactly the float rows `w` [n, k]: then running `q` runs `w`, and
 * quantizing `w` again could only lose (a file made with another quantizer's scales, an importance
 * matrix, or codes our rounding would not pick). Stops at the first value that differs.
 */
export function holdsExactly(q: BlockQuantizedMatrix, w: Float32Array): boolean {
  const { n, k, bits, blockSize } = q;
  if (w.length !== n * k) return false;
  const nb = blocksPerRow(k, blockSize);
  const blob = (blockSize * bits) / 8;
  const zero = bits === 8 ? 128 : 8;
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < nb; b++) {
      const scale = q.scales[r * nb + b]!;
      const at = (r * nb + b) * blob;
      const len = Math.min(blockSize, k - b * blockSize);
      const from = r * k + b * blockSize;
      for (let i = 0; i < len; i++) {
        const code = bits === 8 ? q.codes[at + i]! : (q.codes[at + (i >> 1)]! >> ((i & 1) * 4)) & 15;
        if (Math.fround((code - zero) * scale) !== w[from + i]) return false;
      }
    }
  }
  return true;
}
