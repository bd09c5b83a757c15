import { type ModelSpec, weightName } from '../../src/runtime/model/spec.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { ropeInverseFrequencies } from '../../src/runtime/onnx/rope-cache.ts';

/**
 * The oracle: a plain, slow, obviously correct LLaMA forward pass over a whole token sequence
 * (full causal attention, no cache, float64 accumulation). Tests compare the ONNX graph to it.
 * Returns logits for every position, [tokens.length * vocab].
 * `matmulInput`, when given, rewrites every vector before a weight matrix multiplies it (e.g.
 * llama.cpp's rounding of activations to 8-bit blocks next to Q8_0 / Q4_0 weights).
 */
export function referenceForward(spec: ModelSpec, weights: Weights, tokens: readonly number[], matmulInput?: (v: Float64Array) => Float64Array): Float32Array {
  const W = (name: string) => {
    const t = weights.get(name);
    if (!t) throw new Error(`missing weight ${name}`);
    return t.data;
  };
  const T = tokens.length;
  const H = spec.hidden;
  const emb = W(weightName.embed);
  let x: Float64Array[] = tokens.map((t) => Float64Array.from(emb.subarray(t * H, (t + 1) * H)));

  const rmsNorm = (v: Float64Array, gamma: Float32Array) => {
    let ss = 0;
    for (const a of v) ss += a * a;
    const scale = 1 / Math.sqrt(ss / v.length + spec.normEps);
    return v.map((a, i) => a * scale * gamma[i]!);
  };
  /** y = W v, W row-major [out, in]. */
  const matvec = (m: Float32Array, input: Float64Array, out: number) => {
    const v = matmulInput ? matmulInput(input) : input;
    const inn = v.length;
    const y = new Float64Array(out);
    for (let r = 0; r < out; r++) {
      let s = 0;
      for (let c = 0; c < inn; c++) s += m[r * inn + c]! * v[c]!;
      y[r] = s;
    }
    return y;
  };

  spec.layers.forEach((layer, li) => {
    if (layer.heads > 0) {
      const { heads, kvHeads, headDim: D } = layer;
      const inv = ropeInverseFrequencies(spec.rope, D);
      const rope = (v: Float64Array, nHeads: number, pos: number) => {
        for (let hd = 0; hd < nHeads; hd++) {
          for (let i = 0; i < D / 2; i++) {
            const a = v[hd * D + i]!;
            const b = v[hd * D + i + D / 2]!;
            const c = Math.cos(pos * inv[i]!);
            const s = Math.sin(pos * inv[i]!);
            v[hd * D + i] = a * c - b * s;
            v[hd * D + i + D / 2] = b * c + a * s;
          }
        }
        return v;
      };
      const normed = x.map((v) => rmsNorm(v, W(weightName.attnNorm(li))));
      // Qwen2: a bias after the q/k/v products, before RoPE.
      const biased = (y: Float64Array, bias: string) => (spec.attentionBias ? y.map((a, i) => a + W(bias)[i]!) : y);
      const q = normed.map((v, p) => rope(biased(matvec(W(weightName.q(li)), v, heads * D), weightName.qBias(li)), heads, p));
      const k = normed.map((v, p) => rope(biased(matvec(W(weightName.k(li)), v, kvHeads * D), weightName.kBias(li)), kvHeads, p));
      const val = normed.map((v) => biased(matvec(W(weightName.v(li)), v, kvHeads * D), weightName.vBias(li)));
      const group = heads / kvHeads;
      x = x.map((resid, p) => {
        const attn = new Float64Array(heads * D);
        for (let hd = 0; hd < heads; hd++) {
          const kv = Math.floor(hd / group);
          const scores = new Float64Array(p + 1);
          for (let t = 0; t <= p; t++) {
            let s = 0;
            for (let d = 0; d < D; d++) s += q[p]![hd * D + d]! * k[t]![kv * D + d]!;
            scores[t] = s / Math.sqrt(D);
          }
          const mx = Math.max(...scores);
          let sum = 0;
          for (let t = 0; t <= p; t++) sum += scores[t] = Math.exp(scores[t]! - mx);
          for (let t = 0; t <= p; t++) for (let d = 0; d < D; d++) attn[hd * D + d]! += (scores[t]! / sum) * val[t]![kv * D + d]!;
        }
        const o = matvec(W(weightName.o(li)), attn, H);
        return resid.map((a, i) => a + o[i]!);
      });
    }
    if (layer.ffn > 0) {
      x = x.map((resid) => {
        const n = rmsNorm(resid, W(weightName.mlpNorm(li)));
        const gate = matvec(W(weightName.gate(li)), n, layer.ffn);
        const up = matvec(W(weightName.up(li)), n, layer.ffn);
        const act = gate.map((g, j) => (g / (1 + Math.exp(-g))) * up[j]!);
        const down = matvec(W(weightName.down(li)), act, H);
        return resid.map((a, i) => a + down[i]!);
      });
    }
  });

  const head = spec.tiedEmbeddings ? emb : W(weightName.lmHead);
  const logits = new Float32Array(T * spec.vocabSize);
  x.forEach((v, p) => logits.set(matvec(head, rmsNorm(v, W(weightName.finalNorm)), spec.vocabSize), p * spec.vocabSize));
  return logits;
}
