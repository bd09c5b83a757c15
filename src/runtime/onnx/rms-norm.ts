import type { OnnxGraphBuilder } from './onnx-model.ts';

/**
 * RMSNorm as ONNX Runtime's SimplifiedLayerNormalization over the last axis, accumulating in
 * float32 (stash_type) whatever the element type. `gamma` is the initializer of the gains.
 */
export function rmsNormNode(g: OnnxGraphBuilder, x: string, gamma: string, epsilon: number, output?: string): string {
  return g.node('SimplifiedLayerNormalization', [x, gamma], output ? [output] : 1, {
    axis: { i: -1 },
    epsilon: { f: epsilon },
    stash_type: { i: 1 },
  })[0]!;
}
