import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import { syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import { buildDecoderGraph } from '../../src/runtime/onnx/decoder-graph.ts';
import { argmax, maxAbsDiff } from '../helpers/logits.ts';

/** float16 keeps ~3 significant digits; stories260K's logits reach ~22 in magnitude. */
const HALF_TOL = 0.25;

describe('float16 graphs (the GPU dtype), checked on the CPU provider', () => {
  it('keeps weights, activations and the KV cache in float16 and returns float32 logits', async () => {
    const m = await loadModel(defaultModelPath());
    const session = await ModelSession.create(m.spec, m.weights, { maxBatch: 2, maxContext: 64, threads: 1, target: { device: 'cpu', dtype: 'float16' } });
    try {
      assert.equal(session.graph.dtype, 'float16');
      const logits = await session.prefill(1, [1, 403, 407]);
      assert.ok(logits instanceof Float32Array);
      assert.equal(logits.length, m.spec.vocabSize);
      const binding = await session.cache.bindSlot(1, 4);
      const k = Object.values(binding.feeds)[0]!;
      assert.equal(k.type, 'float16');
      assert.ok(k.data instanceof Uint16Array);
    } finally {
      await session.release();
    }
  });

  it('matches float32 within float16 tolerance over a prompt and 24 greedy steps, batched, choosing the same tokens', async () => {
    const m = await loadModel(defaultModelPath());
    const full = await ModelSession.create(m.spec, m.weights, { maxBatch: 2, maxContext: 64, threads: 1 });
    const half = await ModelSession.create(m.spec, m.weights, { maxBatch: 2, maxContext: 64, threads: 1, target: { device: 'cpu', dtype: 'float16' } });
    try {
      const prompts = [[1, 403, 407, 261, 378], [1, 300, 301]];
      let worst = 0;
      const next: number[] = [];
      for (const [slot, p] of prompts.entries()) {
        const a = await full.prefill(slot, p);
        const b = await half.prefill(slot, p);
        worst = Math.max(worst, maxAbsDiff(a, b));
        next.push(argmax(a));
        assert.equal(argmax(b), argmax(a), `slot ${slot} prefill picks a different token`);
      }
      for (let step = 0; step < 24; step++) {
        const entries = next.map((token, slot) => ({ slot, token }));
        const a = await full.decode(entries);
        const b = await half.decode(entries);
        a.forEach((x, i) => {
          worst = Math.max(worst, maxAbsDiff(x, b[i]!));
          next[i] = argmax(x);
        });
      }
      assert.ok(worst <= HALF_TOL, `max |Δlogit| ${worst} > ${HALF_TOL}`);
      assert.ok(worst > 0, 'float16 gave bit-identical logits: the graph did not run in float16');
    } finally {
      await full.release();
      await half.release();
    }
  });

  it('stores weights as external data, so the model proto stays small and models past 2 GiB load', () => {
    const spec = syntheticSpec({ vocabSize: 512, hidden: 128, layers: 2, heads: 4, kvHeads: 2, ffn: 256, maxContext: 64 });
    const weights = syntheticWeights(spec, 3);
    for (const dtype of ['float32', 'float16'] as const) {
      const g = buildDecoderGraph(spec, weights, { maxContext: 64, logits: 'last', dtype });
      const external = g.model.externalData.reduce((n, e) => n + e.data.byteLength, 0);
      const bytesPerWeight = dtype === 'float16' ? 2 : 4;
      assert.ok(external >= (512 * 128 + 2 * (128 * 256 * 3)) * bytesPerWeight, `${dtype}: only ${external} bytes external`);
      assert.ok(g.model.bytes.byteLength < 64 * 1024, `${dtype}: proto is ${g.model.bytes.byteLength} bytes`);
    }
  });
});
