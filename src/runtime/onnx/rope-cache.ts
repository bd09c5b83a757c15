import type { RopeSpec } from '../model/spec.ts';
import { paddedHeadDim } from './head-padding.ts';
import type { FloatType, OnnxGraphBuilder } from './onnx-model.ts';

/**
 * Inverse frequencies of RoPE for a head of `headDim`, with Hugging Face's rope_scaling rules
 * (linear: positions divided by factor; llama3: per-frequency smooth interpolation).
 */
export function ropeInverseFrequencies(rope: RopeSpec, headDim: number): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(rope.theta, (2 * i) / headDim);
  const s = rope.scaling;
  if (!s) return inv;
  if (s.type === 'linear') return inv.map((f) => f / s.factor);
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

/**
 * cos/sin tables [positions, paddedDim/2] for the rotate-half layout. Columns past headDim/2 belong
 * to zero padding (see weight-packing.ts) and get the identity rotation.
 */
export function ropeCosSin(rope: RopeSpec, headDim: number, paddedDim: number, positions: number): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInverseFrequencies(rope, headDim);
  const w = paddedDim / 2;
  const cos = new Float32Array(positions * w).fill(1);
  const sin = new Float32Array(positions * w);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < headDim / 2; i++) {
      const angle = p * inv[i]!;
      cos[p * w + i] = Math.cos(angle);
      sin[p * w + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/**
 * The cos/sin initializers of one graph, created once per head size and shared by every layer
 * of that size (GroupQueryAttention takes them as inputs). Returns [cos, sin] initializer names.
 */
export function ropeTableInitializers(g: OnnxGraphBuilder, rope: RopeSpec, positions: number, dtype: FloatType = 'float32'): (headDim: number) => [string, string] {
  const tables = new Map<number, [string, string]>();
  return (headDim) => {
    let names = tables.get(headDim);
    if (!names) {
      const Dp = paddedHeadDim(headDim);
      const { cos, sin } = ropeCosSin(rope, headDim, Dp, positions);
      const key = `${headDim}_${Dp}`;
      names = [g.tensorInitializer(`rope_cos_${key}`, [positions, Dp / 2], cos, dtype), g.tensorInitializer(`rope_sin_${key}`, [positions, Dp / 2], sin, dtype)];
      tables.set(headDim, names);
    }
    return names;
  };
}
