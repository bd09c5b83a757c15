import { type BlockQuantizedMatrix, bitsOf, checkQuantizable, type FileBlocks, holdsExactly, quantizeMatrix, stackBlockRows, type WeightQuantization } from '../model/block-quantization.ts';
import type { Tensor } from '../model/tensor.ts';
import { type MatMulNBitsSettings, matMulNBits, resolveMatMulNBits } from './matmul-nbits.ts';
import type { OnnxGraphBuilder } from './onnx-model.ts';
import { transpose } from './weight-packing.ts';

export interface ProjectionOptions extends MatMulNBitsSettings {
  /** Block-quantized projections (MatMulNBits); float MatMul without. */
  weights?: WeightQuantization;
  /** The checkpoint's own quantized matrices, run as they are where they hold exactly the float weights. */
  fileBlocks?: FileBlocks;
}

/**
 * The decoder graph's projections x · Wᵀ: a MatMul over the transposed float matrix, or
 * MatMulNBits over W's blocks, quantized here (block-quantization.ts) or taken from the checkpoint
 * where its blocks hold exactly the float weights given. Counts which, for the start-up log.
 */
export class DecoderProjections {
  readonly weightBlocks = { fromFile: 0, quantized: 0 };
  private readonly bits: 4 | 8 | undefined;
  private readonly blockSize: number;
  private readonly accuracyLevel: number;

  constructor(
    private readonly g: OnnxGraphBuilder,
    /** A float initializer in the graph's element type. */
    private readonly init: (name: string, dims: number[], data: Float32Array) => string,
    private readonly weight: (name: string) => Tensor,
    private readonly options: ProjectionOptions,
  ) {
    this.bits = options.weights ? bitsOf(options.weights) : undefined;
    ({ blockSize: this.blockSize, accuracyLevel: this.accuracyLevel } = resolveMatMulNBits(options));
  }

  /**
   * x · Wᵀ for a weight W [n, k] (the rows of `tensors` stacked): `rows` gives W, `transposed` Wᵀ;
   * both are made lazily, since only one form is needed.
   */
  linear(x: string, name: string, tensors: readonly string[], n: number, k: number, rows: () => Float32Array, transposed: () => Float32Array, output?: string): string {
    const { g, bits, blockSize } = this;
    if (bits === undefined) return g.node('MatMul', [x, this.init(name, [k, n], transposed())], output ? [output] : 1)[0]!;
    checkQuantizable(tensors[0]!, k, bits, blockSize);
    const w = rows();
    const fromFile = this.blocksFromFile(tensors, n, k, w);
    this.weightBlocks[fromFile ? 'fromFile' : 'quantized']++;
    return matMulNBits(g, x, name, fromFile ?? quantizeMatrix(w, n, k, bits, blockSize), output, this.accuracyLevel);
  }

  /** x + b over the last axis (a projection's bias, added after its MatMul or MatMulNBits), b in the graph's element type. */
  addBias(x: string, name: string, b: Float32Array): string {
    return this.g.op('Add', [x, this.init(name, [b.length], b)]);
  }

  /** x · Wᵀ for one stored weight matrix, as it is. */
  matrix(x: string, name: string, weightName: string): string {
    const t = this.weight(weightName);
    return this.linear(x, name, [weightName], t.shape[0]!, t.shape[1]!, () => t.data, () => transpose(t));
  }

  /** The checkpoint's blocks of `tensors` stacked, when they hold exactly `w` [n, k] in this graph's block form. */
  private blocksFromFile(tensors: readonly string[], n: number, k: number, w: Float32Array): BlockQuantizedMatrix | undefined {
    const parts = tensors.map((t) => this.options.fileBlocks?.get(t));
    if (parts.some((q) => q === undefined || q.bits !== this.bits || q.blockSize !== this.blockSize || q.k !== k)) return undefined;
    const q = stackBlockRows(parts as BlockQuantizedMatrix[]);
    return q.n === n && holdsExactly(q, w) ? q : undefined;
  }
}
