import { blocksPerRow, type BlockQuantizedMatrix, DEFAULT_BLOCK_SIZE } from '../model/block-quantization.ts';
import { DataType, type OnnxGraphBuilder } from './onnx-model.ts';

/**
 * ONNX Runtime's accuracy_level for MatMulNBits on the CPU: 0 leaves the choice to the kernel
 * (float32 activations against dequantized blocks), 4 quantizes the activations to int8 per block
 * and runs integer dot products (MLAS CompInt8). Measured on this machine by
 * scripts/bench-engine.ts --dtype int8|int4 (docs/quantization-report.md gives the numbers); the
 * default is the faster one, MOP_NBITS_ACCURACY overrides it for such measurements.
 */
export const DEFAULT_ACCURACY_LEVEL = 4;

/**
 * Values per block along K. 32 by default: ggml's Q8_0 / Q4_0 block, so a GGUF written from the
 * same weights holds exactly what runs. MOP_NBITS_BLOCK (16–256, a power of 2) trades that for
 * speed: at 128 the CPU kernel runs a 100M model's decode step ~20% faster (fewer scales per dot
 * product; docs/quantization-report.md).
 */
export function blockSizeSetting(): number {
  const v = process.env.MOP_NBITS_BLOCK;
  if (v === undefined || v === '') return DEFAULT_BLOCK_SIZE;
  const n = Number(v);
  if (![16, 32, 64, 128, 256].includes(n)) throw new RangeError(`MOP_NBITS_BLOCK must be 16, 32, 64, 128 or 256, got '${v}'`);
  return n;
}

export function accuracyLevel(): number {
  const v = process.env.MOP_NBITS_ACCURACY;
  if (v === undefined || v === '') return DEFAULT_ACCURACY_LEVEL;
  const n = Number(v);
  if (![0, 1, 2, 3, 4].includes(n)) throw new RangeError(`MOP_NBITS_ACCURACY must be 0–4, got '${v}'`);
  return n;
}

/**
 * Y = X · Wᵀ with W block-quantized ([N, K] → Y's last dimension N), as one
 * com.microsoft.MatMulNBits node. Codes are stored [N, blocks, blob] and scales [N · blocks]; no
 * zero-point input, so the op uses 2^(bits−1), the symmetric form block-quantization.ts writes.
 */
export function matMulNBits(g: OnnxGraphBuilder, x: string, name: string, q: BlockQuantizedMatrix, output?: string, level = accuracyLevel()): string {
  const nb = blocksPerRow(q.k, q.blockSize);
  const codes = g.initializer(`${name}.q${q.bits}`, { dims: [q.n, nb, (q.blockSize * q.bits) / 8], dataType: DataType.uint8, raw: q.codes });
  const scales = g.floatInitializer(`${name}.scales`, [q.n * nb], q.scales);
  return g.node('MatMulNBits', [x, codes, scales], output ? [output] : 1, { K: { i: q.k }, N: { i: q.n }, bits: { i: q.bits }, block_size: { i: q.blockSize }, accuracy_level: { i: level } }, 'com.microsoft')[0]!;
}
