import type { ExecutionTarget } from '../device/device.ts';
import type { FileBlocks } from '../model/block-quantization.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import type { MatMulNBitsSettings } from '../onnx/matmul-nbits.ts';
import { ModelSession } from './ort-decoder-session.ts';

/**
 * Perplexity of token windows through the serving graph itself (ModelSession with logits for every
 * position), on any target: the way to measure what int8 / int4 weights, or float16, cost in
 * quality, since MoP's masked calibration forward runs float32 only. Each window is one prefill
 * from an empty cache; every token after the first is predicted from its own window.
 */
export interface DecoderPerplexity {
  perplexity: number;
  /** Mean negative log-likelihood per predicted token, in nats. */
  meanNll: number;
  tokens: number;
}

export async function decoderPerplexity(
  model: { spec: ModelSpec; weights: Weights; fileBlocks?: FileBlocks },
  windows: readonly Int32Array[],
  options: { target?: ExecutionTarget; threads?: number; matMulNBits?: MatMulNBitsSettings } = {},
): Promise<DecoderPerplexity> {
  const longest = windows.reduce((m, w) => Math.max(m, w.length), 2);
  const session = await ModelSession.create(model.spec, model.weights, {
    maxBatch: 1,
    maxContext: longest,
    logits: 'all',
    ...(options.threads !== undefined && { threads: options.threads }),
    ...(options.target && { target: options.target }),
    // A GGUF Q8_0 / Q4_0 checkpoint is measured with its own blocks, as it is served.
    ...(model.fileBlocks && { fileBlocks: model.fileBlocks }),
    ...(options.matMulNBits && { matMulNBits: options.matMulNBits }),
  });
  const V = model.spec.vocabSize;
  let sum = 0;
  let count = 0;
  try {
    for (const w of windows) {
      if (w.length < 2) continue;
      session.reset(0);
      const logits = await session.prefill(0, Array.from(w));
      for (let t = 0; t + 1 < w.length; t++) {
        const row = logits.subarray(t * V, (t + 1) * V);
        let max = -Infinity;
        for (let v = 0; v < V; v++) if (row[v]! > max) max = row[v]!;
        let z = 0;
        for (let v = 0; v < V; v++) z += Math.exp(row[v]! - max);
        sum += max + Math.log(z) - row[w[t + 1]!]!;
        count++;
      }
    }
  } finally {
    await session.release();
  }
  return { perplexity: Math.exp(sum / count), meanNll: sum / count, tokens: count };
}
