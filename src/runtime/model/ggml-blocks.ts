import { type BlockQuantizedMatrix, quantizeMatrix } from './block-quantization.ts';
import { f16ToNumber, numberToF16 } from './half.ts';

/**
 * ggml's Q8_0 and Q4_0 tensor encodings, as GGUF files store them. Both cut a row into blocks of
 * 32 values, each an f16 scale d followed by the codes:
 *   Q8_0: 32 int8 q; value = d · q.
 *   Q4_0: 16 bytes; byte j holds value j (low nibble) and value j + 16 (high nibble); value = d · (nibble − 8).
 * The arithmetic is the one our MatMulNBits blocks use (block-quantization.ts): only the byte
 * layout differs, so quantizing goes through quantizeMatrix and the conversions below are exact.
 */

/** Values per Q8_0 / Q4_0 block (ggml's QK8_0 = QK4_0). */
export const GGML_BLOCK = 32;

/** Bytes one block of `bits`-bit codes occupies: the f16 scale and the packed codes. */
export function ggmlBlockBytes(bits: 4 | 8): number {
  return 2 + (GGML_BLOCK * bits) / 8;
}

const Q8_0_BLOCK_BYTES = ggmlBlockBytes(8);
const Q4_0_BLOCK_BYTES = ggmlBlockBytes(4);

const readScale = (bytes: Uint8Array, p: number): number => f16ToNumber(bytes[p]! | (bytes[p + 1]! << 8));

function writeScale(out: Uint8Array, p: number, scale: number): void {
  const h = numberToF16(scale);
  out[p] = h & 0xff;
  out[p + 1] = h >>> 8;
}

export function dequantizeQ8_0(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let b = 0, p = 0; b * GGML_BLOCK < count; b++, p += Q8_0_BLOCK_BYTES) {
    const d = readScale(bytes, p);
    for (let j = 0; j < GGML_BLOCK; j++) out[b * GGML_BLOCK + j] = d * ((bytes[p + 2 + j]! << 24) >> 24);
  }
  return out;
}

export function dequantizeQ4_0(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let b = 0, p = 0; b * GGML_BLOCK < count; b++, p += Q4_0_BLOCK_BYTES) {
    const d = readScale(bytes, p);
    for (let j = 0; j < 16; j++) {
      const q = bytes[p + 2 + j]!;
      out[b * GGML_BLOCK + j] = d * ((q & 15) - 8);
      out[b * GGML_BLOCK + j + 16] = d * ((q >> 4) - 8);
    }
  }
  return out;
}

/** Quantize as ggml's reference quantize_row_q8_0 does (d = amax/127, q = round(x/d)). */
export function quantizeQ8_0(data: Float32Array): Uint8Array {
  return quantizeGgml(data, 8, 'Q8_0');
}

/** Quantize as ggml's reference quantize_row_q4_0 does (d = the largest-magnitude value / −8). */
export function quantizeQ4_0(data: Float32Array): Uint8Array {
  return quantizeGgml(data, 4, 'Q4_0');
}

function quantizeGgml(data: Float32Array, bits: 4 | 8, format: string): Uint8Array {
  if (data.length % GGML_BLOCK !== 0) throw new Error(`${format} needs a multiple of ${GGML_BLOCK} values, got ${data.length}`);
  const blocks = data.length / GGML_BLOCK;
  return matrixToGgmlBlocks(quantizeMatrix(data, blocks, GGML_BLOCK, bits, GGML_BLOCK));
}

/**
 * MatMulNBits blocks (one block per row of `q`, as quantizeGgml makes them) → ggml's bytes: an
 * 8-bit code c is the int8 c − 128; 4-bit codes go from neighbours per byte (2i, 2i + 1) to j, j + 16.
 */
function matrixToGgmlBlocks(q: BlockQuantizedMatrix): Uint8Array {
  const blockBytes = ggmlBlockBytes(q.bits);
  const blob = (GGML_BLOCK * q.bits) / 8;
  const blocks = q.scales.length;
  const out = new Uint8Array(blocks * blockBytes);
  for (let b = 0; b < blocks; b++) {
    const p = b * blockBytes;
    writeScale(out, p, q.scales[b]!);
    if (q.bits === 8) {
      for (let j = 0; j < GGML_BLOCK; j++) out[p + 2 + j] = q.codes[b * blob + j]! ^ 0x80;
    } else {
      const code = (i: number) => (q.codes[b * blob + (i >> 1)]! >> ((i & 1) * 4)) & 15;
      for (let j = 0; j < 16; j++) out[p + 2 + j] = code(j) | (code(j + 16) << 4);
    }
  }
  return out;
}

/**
 * A Q8_0 (bits 8) or Q4_0 (bits 4) [n, k] matrix's bytes as the blocks MatMulNBits reads, with no
 * float on the way: Q8_0's int8 q becomes the code q + 128, Q4_0's nibbles (value j low, value
 * j + 16 high in byte j) are repacked two neighbours to a byte; the f16 scales are kept.
 */
export function ggmlBlocksToMatrix(bytes: Uint8Array, bits: 4 | 8, n: number, k: number): BlockQuantizedMatrix {
  const blocks = (n * k) / GGML_BLOCK;
  const blockBytes = ggmlBlockBytes(bits);
  const blob = (GGML_BLOCK * bits) / 8;
  const scales = new Float32Array(blocks);
  const codes = new Uint8Array(blocks * blob);
  const nibble = (p: number, j: number) => (j < 16 ? bytes[p + 2 + j]! & 15 : bytes[p + 2 + j - 16]! >> 4);
  for (let b = 0, p = 0; b < blocks; b++, p += blockBytes) {
    scales[b] = readScale(bytes, p);
    if (bits === 8) {
      for (let j = 0; j < GGML_BLOCK; j++) codes[b * blob + j] = bytes[p + 2 + j]! ^ 0x80;
    } else {
      for (let j = 0; j < GGML_BLOCK; j += 2) codes[b * blob + (j >> 1)] = nibble(p, j) | (nibble(p, j + 1) << 4);
    }
  }
  return { bits, blockSize: GGML_BLOCK, n, k, codes, scales };
}
