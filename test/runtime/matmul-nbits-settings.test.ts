import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { targetFor } from '../../src/runtime/device/device.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { dequantizeMatrix, quantizeMatrix } from '../../src/runtime/model/block-quantization.ts';
import { weightName } from '../../src/runtime/model/spec.ts';
import { syntheticPresets, syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { buildDecoderGraph } from '../../src/runtime/onnx/decoder-graph.ts';
import { maxAbsDiff } from '../helpers/logits.ts';

const spec = syntheticSpec(syntheticPresets.tiny);
const weights = syntheticWeights(spec, 3);
const prompt = [1, 9, 4, 33, 2, 17];

/** Every projection and the LM head as int8 blocks of `blockSize` give them, back in float. */
function int8Rounded(w: Weights, blockSize: number): Weights {
  const out: Weights = new Map(w);
  for (const [name, t] of w) {
    if (t.shape.length !== 2 || name === weightName.embed) continue;
    const [n, k] = t.shape as [number, number];
    out.set(name, { shape: t.shape, data: dequantizeMatrix(quantizeMatrix(t.data, n, k, 8, blockSize)) });
  }
  return out;
}

async function prefillLogits(w: Weights, options: Parameters<typeof ModelSession.create>[2]): Promise<Float32Array> {
  const s = await ModelSession.create(spec, w, options);
  try {
    return await s.prefill(0, prompt);
  } finally {
    await s.release();
  }
}

describe('MatMulNBits settings (ModelSessionOptions.matMulNBits)', () => {
  it('runs the block size and accuracy level asked: blocks of 64 at level 0 give the float model with weights rounded in blocks of 64', async () => {
    const base = { maxBatch: 1, maxContext: 32, threads: 1 };
    const quantized = await prefillLogits(weights, { ...base, target: targetFor('cpu', 'int8'), matMulNBits: { blockSize: 64, accuracyLevel: 0 } });
    const rounded64 = await prefillLogits(int8Rounded(weights, 64), base);
    const rounded32 = await prefillLogits(int8Rounded(weights, 32), base);
    const near = maxAbsDiff(quantized, rounded64);
    assert.ok(near < 1e-3, `blocks of 64, float activations: |Δlogit| ${near}`);
    assert.ok(maxAbsDiff(quantized, rounded32) > 10 * near, 'blocks of 32 round differently');
  });

  it('no longer reads MOP_NBITS_BLOCK or MOP_NBITS_ACCURACY: the default graph is the same with them set', () => {
    const build = () => buildDecoderGraph(spec, weights, { maxContext: 32, logits: 'last', weights: 'int8' }).model.bytes;
    const plain = build();
    process.env.MOP_NBITS_BLOCK = '128';
    process.env.MOP_NBITS_ACCURACY = '0';
    try {
      assert.deepEqual(build(), plain);
    } finally {
      delete process.env.MOP_NBITS_BLOCK;
      delete process.env.MOP_NBITS_ACCURACY;
    }
  });

  it('refuses a block size or accuracy level MatMulNBits cannot take, naming it', () => {
    assert.throws(() => buildDecoderGraph(spec, weights, { maxContext: 32, logits: 'last', weights: 'int8', blockSize: 48 }), /blockSize must be 16, 32, 64, 128 or 256, got 48/);
    assert.throws(() => buildDecoderGraph(spec, weights, { maxContext: 32, logits: 'last', weights: 'int8', accuracyLevel: 5 }), /accuracyLevel must be 0–4, got 5/);
  });
});
