import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { buildDecoderGraph } from '../../src/runtime/onnx/decoder-graph.ts';
import type { LayerSpec, ModelSpec } from '../../src/runtime/model/spec.ts';
import { syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { referenceForward } from '../helpers/reference-forward.ts';
import { argmax, maxAbsDiff } from '../helpers/logits.ts';

const TOL = 1e-3;

/** Prefill `prompt`, then greedily decode `steps` tokens; compare every step with the oracle. */
async function assertPrefillAndDecodeMatchReference(spec: ModelSpec, weights: Weights, prompt: number[], steps: number) {
  const session = await ModelSession.create(spec, weights, { maxBatch: 1, maxContext: prompt.length + steps + 1, threads: 1 });
  try {
    const tokens = [...prompt];
    let logits = await session.prefill(0, prompt);
    for (let step = 0; step <= steps; step++) {
      const ref = referenceForward(spec, weights, tokens);
      const last = ref.subarray((tokens.length - 1) * spec.vocabSize);
      const diff = maxAbsDiff(logits, last);
      assert.ok(diff <= TOL, `step ${step}: max |Δlogit| ${diff} > ${TOL}`);
      if (step === steps) break;
      const next = argmax(last);
      tokens.push(next);
      [logits] = (await session.decode([{ slot: 0, token: next }])) as [Float32Array];
    }
  } finally {
    await session.release();
  }
}

const uniform = syntheticSpec({ vocabSize: 97, hidden: 64, layers: 3, heads: 4, kvHeads: 2, ffn: 96, maxContext: 128 });
const prunedLayers: LayerSpec[] = [
  { heads: 4, kvHeads: 2, headDim: 16, ffn: 96 },
  { heads: 2, kvHeads: 1, headDim: 16, ffn: 0 }, // attention only
  { heads: 0, kvHeads: 0, headDim: 16, ffn: 40 }, // MLP only
  { heads: 0, kvHeads: 0, headDim: 16, ffn: 0 }, // identity
  { heads: 6, kvHeads: 3, headDim: 8, ffn: 24 }, // head size that GQA needs padded
];
const pruned = syntheticSpec({ vocabSize: 97, hidden: 64, layers: prunedLayers, maxContext: 128, tiedEmbeddings: true });

describe('ONNX decoder graph matches the reference forward pass', () => {
  it('for a uniform GQA model over prefill and 32 greedy decode steps', async () => {
    await assertPrefillAndDecodeMatchReference(uniform, syntheticWeights(uniform, 7), [1, 5, 17, 42, 8, 3], 32);
  });

  it('for a pruned model with per-layer shapes, absent sub-blocks and padded head size', async () => {
    await assertPrefillAndDecodeMatchReference(pruned, syntheticWeights(pruned, 11), [1, 60, 2, 33, 90], 32);
  });

  it('returns logits for every prompt position when built for evaluation', async () => {
    const weights = syntheticWeights(pruned, 5);
    const prompt = [1, 4, 9, 16, 25, 36, 49, 64];
    const session = await ModelSession.create(pruned, weights, { maxBatch: 1, maxContext: 64, logits: 'all', prefillChunk: 3, threads: 1 });
    const all = await session.prefill(0, prompt);
    await session.release();
    assert.ok(maxAbsDiff(all, referenceForward(pruned, weights, prompt)) <= TOL);
  });

  it('folds each residual Add into the next RMSNorm (one SkipSimplifiedLayerNormalization per norm after the first), with the logits of the unfused graph', async () => {
    const weights = syntheticWeights(uniform, 3);
    const build = (fuse: boolean) => buildDecoderGraph(uniform, weights, { maxContext: 32, logits: 'last', packedTokens: true, fuseResidualNorm: fuse, cacheOutputs: 'new' });
    const skipNodes = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1').split('SkipSimplifiedLayerNormalization').length - 1;
    const [fused, plain] = [build(true), build(false)];
    // Each fused node names its op type twice (node name and op type); 3 layers = 6 norms, the first plain.
    assert.equal(skipNodes(fused.model.bytes) / 2, 5);
    assert.equal(skipNodes(plain.model.bytes), 0);
    const prompt = [1, 9, 4, 33, 2];
    const logits: Float32Array[] = [];
    for (const graph of [fused, plain]) {
      const session = await ModelSession.create(uniform, weights, { maxBatch: 1, maxContext: 32, threads: 1, graph });
      logits.push(await session.prefill(0, prompt), ...(await session.decode([{ slot: 0, token: 7 }])));
      await session.release();
    }
    assert.ok(maxAbsDiff(logits[0]!, logits[2]!) <= 1e-5 && maxAbsDiff(logits[1]!, logits[3]!) <= 1e-5);
  });

  it('applies linear and llama3 RoPE scaling like the reference', async () => {
    for (const scaling of [
      { type: 'linear' as const, factor: 4 },
      { type: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 },
    ]) {
      const spec = { ...uniform, rope: { theta: 500000, scaling } };
      await assertPrefillAndDecodeMatchReference(spec, syntheticWeights(spec, 2), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20], 4);
    }
  });
});

describe('KV cache slots', () => {
  it('batched decode over scattered slots gives each sequence the logits it gets alone', async () => {
    const weights = syntheticWeights(uniform, 3);
    const session = await ModelSession.create(uniform, weights, { maxBatch: 4, maxContext: 64, threads: 1 });
    const prompts = { 0: [1, 2, 3], 2: [1, 50, 51, 52, 53, 54], 3: [1, 9] } as Record<number, number[]>;
    for (const [slot, p] of Object.entries(prompts)) await session.prefill(Number(slot), p);
    const next = { 0: 10, 2: 20, 3: 30 } as Record<number, number>;
    for (let step = 0; step < 5; step++) {
      // Slot 1 is empty and slot 3 sits out every other step: neither may disturb the others.
      const slots = step % 2 === 0 ? [0, 2, 3] : [0, 2];
      const out = await session.decode(slots.map((slot) => ({ slot, token: next[slot]! })));
      slots.forEach((slot, k) => {
        prompts[slot]!.push(next[slot]!);
        const ref = referenceForward(uniform, weights, prompts[slot]!);
        const diff = maxAbsDiff(out[k]!, ref.subarray((prompts[slot]!.length - 1) * uniform.vocabSize));
        assert.ok(diff <= TOL, `slot ${slot} step ${step}: ${diff}`);
        next[slot] = (next[slot]! + 7) % uniform.vocabSize;
      });
    }
    await session.release();
  });

  it('grows the cache past its initial capacity and shrinks it back without changing any logits', async () => {
    const spec = syntheticSpec({ vocabSize: 97, hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 64, maxContext: 512 });
    const weights = syntheticWeights(spec, 9);
    const session = await ModelSession.create(spec, weights, { maxBatch: 2, maxContext: 512, threads: 1 });
    const long = Array.from({ length: 120 }, (_, i) => 1 + ((i * 13) % 96));
    const short = [1, 7, 7, 3];
    await session.prefill(0, long);
    await session.prefill(1, short);
    const start = session.cache.capacity;
    // Decode both across the initial capacity: the long one forces growth while the short one lives.
    for (let step = 0; step < 20; step++) {
      const out = await session.decode([
        { slot: 0, token: 5 + step },
        { slot: 1, token: 9 + step },
      ]);
      long.push(5 + step);
      short.push(9 + step);
      if (step % 6 === 5) {
        for (const [k, seq] of [long, short].entries()) {
          const ref = referenceForward(spec, weights, seq);
          assert.ok(maxAbsDiff(out[k]!, ref.subarray((seq.length - 1) * spec.vocabSize)) <= TOL, `slot ${k} step ${step}`);
        }
      }
    }
    assert.ok(session.cache.capacity > start, `capacity grew from ${start} to ${session.cache.capacity}`);
    const grown = session.cache.capacity;
    // The long sequence ends; the short one goes on in a cache that shrinks back.
    session.reset(0);
    const out = await session.decode([{ slot: 1, token: 42 }]);
    short.push(42);
    assert.ok(session.cache.capacity < grown, `capacity shrank from ${grown} to ${session.cache.capacity}`);
    const ref = referenceForward(spec, weights, short);
    assert.ok(maxAbsDiff(out[0]!, ref.subarray((short.length - 1) * spec.vocabSize)) <= TOL);
    await session.release();
  });

  it('rejects a prompt longer than the context with a clear error', async () => {
    const session = await ModelSession.create(uniform, syntheticWeights(uniform, 1), { maxBatch: 1, maxContext: 8, threads: 1 });
    await assert.rejects(session.prefill(0, [1, 2, 3, 4, 5, 6, 7, 8, 9]), { name: 'ContextLengthError', message: /9 tokens exceeds the context of 8/ });
    await session.release();
  });

  it('reuses a graph built for a longer context, and refuses one that cannot serve the session', async () => {
    const weights = syntheticWeights(uniform, 1);
    // Built as ModelSession builds it on the CPU (packed tokens, residuals folded into the norms).
    const graph = buildDecoderGraph(uniform, weights, { maxContext: 64, logits: 'last', packedTokens: true, fuseResidualNorm: true, cacheOutputs: 'new' });
    const reused = await ModelSession.create(uniform, weights, { maxBatch: 1, maxContext: 32, threads: 1, graph });
    const fresh = await ModelSession.create(uniform, weights, { maxBatch: 1, maxContext: 32, threads: 1 });
    assert.equal(maxAbsDiff(await reused.prefill(0, [1, 2, 3, 4]), await fresh.prefill(0, [1, 2, 3, 4])), 0);
    await reused.release();
    await fresh.release();
    await assert.rejects(ModelSession.create(uniform, weights, { maxBatch: 1, maxContext: 128, threads: 1, graph }), /built for context 64 in float32 with new cache outputs, not 128/);
    await assert.rejects(ModelSession.create(uniform, weights, { maxBatch: 1, maxContext: 32, threads: 1, graph, target: { device: 'cpu', dtype: 'float16' } }), /in float32 with new cache outputs, not 32 in float16/);
    const inPlace = buildDecoderGraph(uniform, weights, { maxContext: 64, logits: 'last', packedTokens: true, fuseResidualNorm: true });
    await assert.rejects(ModelSession.create(uniform, weights, { maxBatch: 1, maxContext: 32, threads: 1, graph: inPlace }), /with present cache outputs, not 32 in float32 with new/);
  });
});
