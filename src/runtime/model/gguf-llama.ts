/**
 * How llama.cpp's `llama` architecture lays a model out in GGUF: the tensor names, and llama3 RoPE
 * scaling stored as per-frequency divisors in `rope_freqs.weight`. GGUF keeps Q/K rows in the
 * interleaved RoPE layout (llama.cpp's converter permutes Hugging Face weights): `ropeHeads` says
 * which tensors to permute. `qwen2` uses the same names, plus attn_{q,k,v}.bias, unpermuted.
 */
import { shortestF32 } from './gguf-metadata.ts';
import { ModelFormatError, type ModelSpec, type RopeScaling, weightName } from './spec.ts';

export interface GgufNamePair {
  gguf: string;
  hf: string;
  /** Heads to (un)permute for RoPE layout (attn_q: query heads, attn_k: KV heads). */
  ropeHeads?: number;
}

/** The GGUF tensor for every weight the spec expects, in llama.cpp's conventional order. */
export function ggufTensorNames(spec: ModelSpec): GgufNamePair[] {
  // qwen2 files keep Hugging Face's rotate-half rows (llama.cpp runs that architecture with NEOX RoPE).
  const interleaved = spec.family !== 'qwen2' && !spec.attentionBias;
  const out: GgufNamePair[] = [
    { gguf: 'token_embd.weight', hf: weightName.embed },
    { gguf: 'output_norm.weight', hf: weightName.finalNorm },
  ];
  if (!spec.tiedEmbeddings) out.push({ gguf: 'output.weight', hf: weightName.lmHead });
  spec.layers.forEach((l, i) => {
    const b = `blk.${i}`;
    if (l.heads > 0) {
      out.push(
        { gguf: `${b}.attn_norm.weight`, hf: weightName.attnNorm(i) },
        { gguf: `${b}.attn_q.weight`, hf: weightName.q(i), ...(interleaved && { ropeHeads: l.heads }) },
        { gguf: `${b}.attn_k.weight`, hf: weightName.k(i), ...(interleaved && { ropeHeads: l.kvHeads }) },
        { gguf: `${b}.attn_v.weight`, hf: weightName.v(i) },
        { gguf: `${b}.attn_output.weight`, hf: weightName.o(i) },
      );
      if (spec.attentionBias) out.push({ gguf: `${b}.attn_q.bias`, hf: weightName.qBias(i) }, { gguf: `${b}.attn_k.bias`, hf: weightName.kBias(i) }, { gguf: `${b}.attn_v.bias`, hf: weightName.vBias(i) });
    }
    if (l.ffn > 0) {
      out.push(
        { gguf: `${b}.ffn_norm.weight`, hf: weightName.mlpNorm(i) },
        { gguf: `${b}.ffn_gate.weight`, hf: weightName.gate(i) },
        { gguf: `${b}.ffn_up.weight`, hf: weightName.up(i) },
        { gguf: `${b}.ffn_down.weight`, hf: weightName.down(i) },
      );
    }
  });
  return out;
}

const LLAMA3_DEFAULTS = { lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };

/** The divisors llama.cpp's convert_hf_to_gguf.py writes to rope_freqs.weight for llama3 scaling. */
export function llama3RopeFactors(theta: number, headDim: number, s: Extract<RopeScaling, { type: 'llama3' }>): Float32Array {
  const out = new Float32Array(headDim / 2);
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < headDim / 2; i++) {
    const freq = Math.fround(1 / Math.fround(theta ** ((2 * i) / headDim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

/** The llama3 scaling a rope_freqs.weight table encodes; anything else is a ModelFormatError. */
export function llama3FromFactors(factors: Float32Array, theta: number, headDim: number, originalCtx: number | undefined, file: string): RopeScaling {
  const factor = shortestF32(factors.reduce((a, b) => Math.max(a, b), 1));
  const s = { type: 'llama3' as const, factor, ...LLAMA3_DEFAULTS, ...(originalCtx ? { originalMaxPositionEmbeddings: originalCtx } : {}) };
  const expect = llama3RopeFactors(theta, headDim, s);
  const ok = factors.length === expect.length && factors.every((f, i) => Math.abs(f - expect[i]!) <= 1e-4 * Math.abs(expect[i]!));
  if (!ok) {
    throw new ModelFormatError(
      `${file}: rope_freqs.weight does not match llama3 RoPE scaling (factor ${factor}, low_freq_factor 1, high_freq_factor 4, original context ${s.originalMaxPositionEmbeddings}); other RoPE frequency tables are not supported`,
    );
  }
  return s;
}
