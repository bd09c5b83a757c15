import { blocksPerRow, type BlockQuantizedMatrix, DEFAULT_BLOCK_SIZE } from '../model/block-quantization.ts';
import { DataType, type OnnxGraphBuilder } from './onnx-model.ts';

/**
 * ONNX Runtime's accuracy_level for MatMulNBits on the CPU: 0 leaves the choice to the kernel
 * (float32 activations against dequantized blocks), 4 quantizes the activations to int8 per block
 * and runs integer dot products (MLAS CompInt8). The default is the faster of the two on the CPU
 * (scripts/bench-quantization.ts measures both: docs/quantization-report.md).
 */
export const DEFAULT_ACCURACY_LEVEL = 4;

/**
 * How a graph's MatMulNBits nodes are built. The defaults are what serving runs; benchmarks vary
 * them (scripts/bench-quantization.ts).
 */
export interface MatMulNBitsSettings {
  /**
   * Values per block along K: 16 to 256, a power of 2. Default 32: ggml's Q8_0 / Q4_0 block, so a
   * GGUF written from the same weights holds exactly what runs; larger blocks trade that for
   * fewer scales per dot product.
   */
  blockSize?: number;
  /** accuracy_level, 0 to 4; default DEFAULT_ACCURACY_LEVEL. */
  accuracyLevel?: number;
}

/** The settings with defaults filled in; a RangeError names a value MatMulNBits cannot take. */
export function resolveMatMulNBits(s: MatMulNBitsSettings): Required<MatMulNBitsSettings> {
  const blockSize = s.blockSize ?? DEFAULT_BLOCK_SIZE;
  const accuracyLevel = s.accuracyLevel ?? DEFAULT_ACCURACY_LEVEL;
  if (![16, 32, 64, 128, 256].includes(blockSize)) throw new RangeError(`MatMulNBits blockSize must be 16, 32, 64, 128 or 256, got ${blockSize}`);
  if (![0, 1, 2, 3, 4].includes(accuracyLevel)) throw new RangeError(`MatMulNBits accuracyLevel must be 0–4, got ${accuracyLevel}`);
  return { blockSize, accuracyLevel };
}

/**
 * Y = X · Wᵀ with W block-quantized ([N, K] → Y's last dimension N), as one
 * com.microsoft.MatMulNBits node. Codes are stored [N, blocks, blob] and scales [N · blocks]; no
 * zero-point input, so the op uses 2^(bits−1), the symmetric form block-quantization.ts writes.
 */
export function matMulNBits(g: OnnxGraphBuilder, x: string, name: string, q: BlockQuantizedMatrix, output?: string, level = DEFAULT_ACCURACY_LEVEL): string {
  const nb = blocksPerRow(q.k, q.blockSize);
  const codes = g.initializer(`${name}.q${q.bits}`, { dims: [q.n, nb, (q.blockSize * q.bits) / 8], dataType: DataType.uint8, raw: q.codes });
  const scales = g.floatInitializer(`${name}.scales`, [q.n * nb], q.scales);
  return g.node('MatMulNBits', [x, codes, scales], output ? [output] : 1, { K: { i: q.k }, N: { i: q.n }, bits: { i: q.bits }, block_size: { i: q.blockSize }, accuracy_level: { i: level } }, 'com.microsoft')[0]!;
}
