/** ONNX Runtime's CPU GroupQueryAttention only accepts head sizes that are multiples of 16. */
const GQA_HEAD_MULTIPLE = 16;

/**
 * The head width a graph computes with: `headDim` rounded up to GQA's multiple. The padding is zeros
 * (weight-packing.ts) with an identity rotation (rope-cache.ts), so results are exact.
 */
export function paddedHeadDim(headDim: number): number {
  return Math.ceil(headDim / GQA_HEAD_MULTIPLE) * GQA_HEAD_MULTIPLE;
}
