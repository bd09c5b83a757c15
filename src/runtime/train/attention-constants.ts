import type { RopeSpec } from '../model/spec.ts';
import { ropeCosSin } from '../onnx/rope-cache.ts';
import type { DiffGraph } from './diff-graph.ts';
import type { RopeTables } from './diff-ops.ts';

/**
 * The constants of plain-op attention for a fixed sequence length T: RoPE tables per head width
 * and the causal mask. The frequencies come from rope-cache.ts (the serving and calibration graphs'
 * source, RoPE scaling included), so training sees exactly the positions serving does.
 */

/** Full-width rotate-half tables [T, D] (dimension d and d ± D/2 share frequency d mod D/2) and the rotation matrix. */
export function ropeTables(dg: DiffGraph, rope: RopeSpec, headDim: number, seqLen: number): RopeTables {
  const D = headDim;
  const half = D / 2;
  const { cos, sin } = ropeCosSin(rope, D, D, seqLen);
  const widen = (t: Float32Array) => Float64Array.from({ length: seqLen * D }, (_, i) => t[Math.floor(i / D) * half + ((i % D) % half)]!);
  // rotate_half(x) = [−x₂, x₁] = x · R
  const rot = new Float64Array(D * D);
  for (let d = 0; d < half; d++) {
    rot[(d + half) * D + d] = -1;
    rot[d * D + d + half] = 1;
  }
  const rotT = new Float64Array(D * D);
  let rotTName: string | undefined;
  for (let r = 0; r < D; r++) for (let c = 0; c < D; c++) rotT[c * D + r] = rot[r * D + c]!;
  return {
    cos: dg.constant(`rope_cos_${D}`, [seqLen, D], widen(cos)),
    sin: dg.constant(`rope_sin_${D}`, [seqLen, D], widen(sin)),
    rot: dg.constant(`rope_rot_${D}`, [D, D], rot),
    // Only the backward pass reads rotᵀ; made on demand so a forward-only graph has no unused initializer.
    rotT: () => (rotTName ??= dg.constant(`rope_rot_t_${D}`, [D, D], rotT)),
  };
}

/** Additive causal mask [T, T]: 0 on and below the diagonal, −1e9 above (softmax gives exactly 0 there). */
export function causalMask(dg: DiffGraph, seqLen: number): string {
  const mask = new Float64Array(seqLen * seqLen);
  for (let r = 0; r < seqLen; r++) for (let c = r + 1; c < seqLen; c++) mask[r * seqLen + c] = -1e9;
  return dg.constant('causal_mask', [seqLen, seqLen], mask);
}
