import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { createOrtSession } from '../../src/runtime/device/ort-session.ts';
import { referenceForward } from '../helpers/reference-forward.ts';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { ModelSpec } from '../../src/runtime/model/spec.ts';
import { syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { buildTrainingGraph, trainingGraphIo } from '../../src/runtime/train/training-graph.ts';

/**
 * The training graph computes the same model as serving: its loss equals the cross-entropy of the
 * float64 reference forward pass (the serving graphs' oracle), to 1e-5 relative, and its
 * log-probabilities match the reference's to 1e-4. Gradient checks prove the backward matches
 * the forward; this proves the forward is the right model (RoPE layout, GQA grouping, norms).
 */
async function assertLossMatchesReference(spec: ModelSpec, weights: Weights, sequences: number[][]) {
  const T = sequences[0]!.length - 1;
  const graph = buildTrainingGraph(spec, weights, { seqLen: T, loss: 'ce', gradients: false, logProbs: true });
  const session = await createOrtSession(graph.model, 'cpu', { threads: 1 });
  try {
    const B = sequences.length;
    const ids = BigInt64Array.from(sequences.flatMap((s) => s.slice(0, T).map(BigInt)));
    const targets = BigInt64Array.from(sequences.flatMap((s) => s.slice(1).map(BigInt)));
    const out = await session.run({
      [trainingGraphIo.inputIds]: new ort.Tensor('int64', ids, [B, T]),
      [trainingGraphIo.targets]: new ort.Tensor('int64', targets, [B, T]),
      [trainingGraphIo.lossWeights]: new ort.Tensor('float32', new Float32Array(B * T).fill(1), [B, T]),
    });
    const V = spec.vocabSize;
    const logProbs = out[trainingGraphIo.logProbs]!.data as Float32Array;
    let nll = 0;
    let maxDiff = 0;
    sequences.forEach((s, b) => {
      const logits = referenceForward(spec, weights, s.slice(0, T));
      for (let t = 0; t < T; t++) {
        const row = logits.subarray(t * V, (t + 1) * V);
        const m = Math.max(...row);
        const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
        nll += lse - row[s[t + 1]!]!;
        for (let v = 0; v < V; v++) maxDiff = Math.max(maxDiff, Math.abs(row[v]! - lse - logProbs[(b * T + t) * V + v]!));
      }
    });
    const reference = nll / (B * T);
    const loss = Number((out[trainingGraphIo.loss]!.data as Float32Array)[0]);
    assert.ok(Math.abs(loss - reference) <= 1e-5 * reference, `loss ${loss} vs reference ${reference}`);
    assert.ok(maxDiff <= 1e-4, `max |Δ log p| ${maxDiff}`);
  } finally {
    await session.release();
  }
}

describe('training graph forward equals the reference forward pass', () => {
  it('bundled stories260K, 2 sequences of 24 tokens', async () => {
    const model = await loadModel(defaultModelPath());
    const seqs = [Array.from({ length: 25 }, (_, i) => (i * 37 + 1) % model.spec.vocabSize), Array.from({ length: 25 }, (_, i) => (i * 11 + 5) % model.spec.vocabSize)];
    await assertLossMatchesReference(model.spec, model.weights, seqs);
  });

  it('synthetic pruned shape: absent sub-blocks, per-layer GQA, llama3 RoPE scaling, tied head', async () => {
    const spec: ModelSpec = {
      ...syntheticSpec({
        vocabSize: 40,
        hidden: 16,
        tiedEmbeddings: true,
        layers: [
          { heads: 4, kvHeads: 2, headDim: 4, ffn: 24 },
          { heads: 0, kvHeads: 0, headDim: 4, ffn: 20 },
          { heads: 2, kvHeads: 1, headDim: 8, ffn: 0 },
        ],
      }),
      rope: { theta: 500, scaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8 } },
    };
    await assertLossMatchesReference(spec, syntheticWeights(spec, 9), [Array.from({ length: 13 }, (_, i) => (i * 7) % 40), Array.from({ length: 13 }, (_, i) => (i * 3 + 2) % 40)]);
  });

  it('q/k/v biases (Qwen2), untied head', async () => {
    const spec: ModelSpec = { ...syntheticSpec({ vocabSize: 40, hidden: 16, layers: [{ heads: 4, kvHeads: 2, headDim: 4, ffn: 24 }, { heads: 2, kvHeads: 1, headDim: 8, ffn: 12 }] }), family: 'qwen2', attentionBias: true };
    const weights = syntheticWeights(spec, 10);
    for (const [name, t] of weights) if (name.endsWith('.bias')) t.data.forEach((_, i) => (t.data[i] = Math.sin(i + name.length)));
    await assertLossMatchesReference(spec, weights, [Array.from({ length: 13 }, (_, i) => (i * 5 + 1) % 40)]);
  });
});
