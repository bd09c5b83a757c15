import { expectedWeightShapes, type LayerSpec, type ModelSpec } from './spec.ts';
import { numel, type Weights } from './tensor.ts';
import { type ScoredVocabSource, TokenType } from '../tokenizer/types.ts';

/** The shape of a LLaMA-style model to fill with random weights (speed work, tests). */
export interface SyntheticShape {
  vocabSize: number;
  hidden: number;
  /** Uniform layers, or explicit per-layer dimensions (a pruned shape). */
  layers: number | LayerSpec[];
  heads?: number;
  kvHeads?: number;
  ffn?: number;
  maxContext?: number;
  tiedEmbeddings?: boolean;
}

/** Named realistic shapes. ~100M follows LLaMA proportions (GQA 4:1, ffn ≈ 2.7 × hidden). */
export const syntheticPresets = {
  tiny: { vocabSize: 256, hidden: 64, layers: 4, heads: 4, kvHeads: 2, ffn: 160, maxContext: 256 },
  '100m': { vocabSize: 32000, hidden: 768, layers: 12, heads: 12, kvHeads: 4, ffn: 2048, maxContext: 2048, tiedEmbeddings: true },
  '1b': { vocabSize: 32000, hidden: 2048, layers: 16, heads: 32, kvHeads: 8, ffn: 5632, maxContext: 4096 },
  /**
   * TinyLlama-1.1B's shape (22 layers, GQA 8:1, untied 32k head): its LM head is 6.3% of the
   * weights a decode step reads, as in LLaMA-2/3 7–8B (2–7%). Serving it in int8 fits a small
   * machine (~1.1 GB read per step), pruning it does not: MoP's float32 calibration passes took
   * over 22 GB here.
   */
  'tinyllama-1b': { vocabSize: 32000, hidden: 2048, layers: 22, heads: 32, kvHeads: 4, ffn: 5632, maxContext: 2048 },
  /**
   * The representative shape bench:speedup prunes: LLaMA proportions (head 64, GQA 4:1, ffn 2.75 ×
   * hidden) made deep enough that the untied 32k LM head is 6.8% of the weights a step reads, as in
   * LLaMA 7–8B; ~0.5B parameters, so MoP's float32 passes fit in ~10 GB.
   */
  '500m': { vocabSize: 32000, hidden: 1024, layers: 40, heads: 16, kvHeads: 4, ffn: 2816, maxContext: 2048 },
} satisfies Record<string, SyntheticShape>;

export function syntheticSpec(shape: SyntheticShape): ModelSpec {
  const heads = shape.heads ?? 4;
  const layers: LayerSpec[] =
    typeof shape.layers === 'number'
      ? Array.from({ length: shape.layers }, () => ({ heads, kvHeads: shape.kvHeads ?? heads, headDim: shape.hidden / heads, ffn: shape.ffn ?? 4 * shape.hidden }))
      : shape.layers;
  return {
    architecture: 'llama',
    vocabSize: shape.vocabSize,
    hidden: shape.hidden,
    layers,
    normEps: 1e-5,
    rope: { theta: 10000 },
    tiedEmbeddings: shape.tiedEmbeddings ?? false,
    bosTokenId: 1,
    eosTokenIds: [2],
    maxContext: shape.maxContext ?? 2048,
  };
}

/**
 * Random weights (seeded, uniform with std 1/sqrt(fan-in) so activations stay O(1) through depth;
 * norm gains near 1) for a spec. Uniform rather than normal: ~10x faster to draw for 1B parameters,
 * and speed work does not care about the distribution.
 */
export function syntheticWeights(spec: ModelSpec, seed = 1): Weights {
  const noise = new UnitUniform(seed);
  const weights: Weights = new Map();
  for (const [name, shape] of expectedWeightShapes(spec)) {
    const data = new Float32Array(numel(shape));
    if (shape.length === 1) noise.fill(data, 0.1, 1);
    else noise.fill(data, name.includes('embed') ? 1 : 1 / Math.sqrt(shape[1]!), 0);
    weights.set(name, { shape, data });
  }
  return weights;
}

/**
 * Zero-mean, unit-variance uniform noise from a xorshift32 stream: fast and reproducible. The
 * generator is inlined in `fill` (a call per number made a 1B model take ~35 s to draw).
 */
class UnitUniform {
  private s: number;
  constructor(seed: number) {
    this.s = (seed * 2654435761) >>> 0 || 1;
  }
  /** data[i] = offset + scale · u_i */
  fill(data: Float32Array, scale: number, offset: number): void {
    const k = (2 * Math.sqrt(3)) / 4294967296;
    const shift = Math.sqrt(3);
    let s = this.s;
    for (let i = 0; i < data.length; i++) {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      data[i] = offset + scale * (s * k - shift);
    }
    this.s = s;
  }
}

/**
 * A vocabulary to go with a synthetic model, so it can be served and benchmarked through text
 * like a real one: <unk>, <s>, </s>, the 256 byte-fallback pieces, then made-up words '▁w<id>'.
 */
export function syntheticVocabulary(size: number): ScoredVocabSource {
  const pieces: string[] = [];
  const types: number[] = [];
  for (let id = 0; id < size; id++) {
    if (id === 0) pieces.push('<unk>'), types.push(TokenType.unknown);
    else if (id === 1) pieces.push('<s>'), types.push(TokenType.control);
    else if (id === 2) pieces.push('</s>'), types.push(TokenType.control);
    else if (id < 3 + 256) pieces.push(`<0x${(id - 3).toString(16).toUpperCase().padStart(2, '0')}>`), types.push(TokenType.byte);
    else pieces.push(`\u2581w${id}`), types.push(TokenType.normal);
  }
  return { kind: 'scored-vocab', pieces, scores: pieces.map(() => 0), types, bosTokenId: 1, eosTokenIds: [2], unkTokenId: 0, addDummyPrefix: true, origin: 'synthetic' };
}
