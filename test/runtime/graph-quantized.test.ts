import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeviceError, parseDtypeRequest, targetFor } from '../../src/runtime/device/device.ts';
import { resolveTarget } from '../../src/runtime/device/resolve.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { quantizeQ8_0 } from '../../src/runtime/model/ggml-blocks.ts';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { ModelSpec } from '../../src/runtime/model/spec.ts';
import { syntheticPresets, syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { dequantizeMatrix, QuantizationShapeError, quantizeMatrix, type WeightQuantization } from '../../src/runtime/model/block-quantization.ts';
import { buildDecoderGraph } from '../../src/runtime/onnx/decoder-graph.ts';
import { argmax, maxAbsDiff } from '../helpers/logits.ts';

/**
 * int8 blocks of 32 keep ~2.5 significant digits per weight; on stories260K (logits up to ~22)
 * the worst logit moves by ~0.2 over a prompt and greedy steps. int4 (16 levels) moves several
 * times more; it is checked on a synthetic shape it can serve.
 */
const INT8_TOL = 0.5;
const INT4_TOL = 2.0;

/** Logits of a float32 and a quantized session over the same prompts and greedy continuations. */
async function compare(spec: ModelSpec, weights: Weights, quant: WeightQuantization, steps: number): Promise<{ worst: number; agree: number; total: number }> {
  const full = await ModelSession.create(spec, weights, { maxBatch: 2, maxContext: 64, threads: 1 });
  const q = await ModelSession.create(spec, weights, { maxBatch: 2, maxContext: 64, threads: 1, target: targetFor('cpu', quant) });
  try {
    assert.equal(q.graph.weights, quant);
    let worst = 0;
    let agree = 0;
    let total = 0;
    const next: number[] = [];
    for (const [slot, p] of [[1, 403, 407, 261, 378], [1, 300, 301]].entries()) {
      const a = await full.prefill(slot, p.map((t) => t % spec.vocabSize));
      const b = await q.prefill(slot, p.map((t) => t % spec.vocabSize));
      worst = Math.max(worst, maxAbsDiff(a, b));
      agree += Number(argmax(a) === argmax(b));
      total++;
      next.push(argmax(a));
    }
    for (let step = 0; step < steps; step++) {
      const entries = next.map((token, slot) => ({ slot, token }));
      const a = await full.decode(entries);
      const b = await q.decode(entries);
      a.forEach((x, i) => {
        worst = Math.max(worst, maxAbsDiff(x, b[i]!));
        agree += Number(argmax(x) === argmax(b[i]!));
        total++;
        next[i] = argmax(x);
      });
    }
    return { worst, agree, total };
  } finally {
    await full.release();
    await q.release();
  }
}

describe('block-quantized weights (MatMulNBits on the CPU)', () => {
  it('quantizes exactly as GGUF Q8_0 does: same float16 scales, same codes (offset by 128)', () => {
    const n = 3;
    const k = 64;
    const w = new Float32Array(n * k).map((_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
    const q = quantizeMatrix(w, n, k, 8);
    const ggml = quantizeQ8_0(w);
    for (let b = 0; b < (n * k) / 32; b++) {
      const view = new DataView(ggml.buffer, ggml.byteOffset + b * 34, 34);
      for (let j = 0; j < 32; j++) assert.equal(q.codes[b * 32 + j]! - 128, view.getInt8(2 + j), `block ${b} value ${j}`);
    }
    const back = dequantizeMatrix(q);
    for (let i = 0; i < w.length; i++) assert.ok(Math.abs(back[i]! - w[i]!) <= q.scales[Math.floor(i / 32)]! * 0.51, `value ${i}`);
  });

  it('pads a ragged last int8 block with zeros, which changes no value', () => {
    const w = new Float32Array([0.5, -1, 0.25, 2, -2]);
    const back = dequantizeMatrix(quantizeMatrix(w, 1, 5, 8));
    assert.ok(maxAbsDiff(back, w) < 0.01);
  });

  it('runs int8 stories260K within tolerance of float32 over a prompt and 24 greedy steps, batched', async () => {
    const m = await loadModel(defaultModelPath());
    const r = await compare(m.spec, m.weights, 'int8', 24);
    assert.ok(r.worst <= INT8_TOL, `max |Δlogit| ${r.worst} > ${INT8_TOL}`);
    assert.ok(r.worst > 0, 'int8 gave bit-identical logits: the weights were not quantized');
    assert.ok(r.agree >= r.total - 2, `greedy token differs at ${r.total - r.agree} of ${r.total} positions`);
  });

  it('runs int4 within a looser tolerance on a shape whose widths are whole blocks', async () => {
    const spec = syntheticSpec(syntheticPresets.tiny);
    const r = await compare(spec, syntheticWeights(spec, 5), 'int4', 8);
    assert.ok(r.worst <= INT4_TOL, `max |Δlogit| ${r.worst} > ${INT4_TOL}`);
    assert.ok(r.worst > 0);
  });

  it('stores the projections and LM head as 8-bit codes, about a quarter of the float32 bytes', () => {
    const spec = syntheticSpec({ vocabSize: 512, hidden: 128, layers: 2, heads: 4, kvHeads: 2, ffn: 256, maxContext: 64 });
    const weights = syntheticWeights(spec, 3);
    const bytes = (w?: WeightQuantization) => buildDecoderGraph(spec, weights, { maxContext: 64, logits: 'last', ...(w && { weights: w }) }).model.externalData.reduce((n, e) => n + e.data.byteLength, 0);
    const f32 = bytes();
    const int8 = bytes('int8');
    const int4 = bytes('int4');
    // The embedding gather stays float32 (512 × 128 × 4 bytes); everything else shrinks.
    const embed = 512 * 128 * 4;
    assert.ok((int8 - embed) / (f32 - embed) < 0.3, `int8 kept ${int8 - embed} of ${f32 - embed} bytes`);
    assert.ok((int4 - embed) / (f32 - embed) < 0.17, `int4 kept ${int4 - embed} of ${f32 - embed} bytes`);
  });
});

describe('quantized weights: bad input', () => {
  it('refuses int4 on a width that is not a whole number of blocks, naming the tensor and what works instead', async () => {
    const m = await loadModel(defaultModelPath()); // ffn 172 = 5 blocks of 32 + 12
    assert.throws(
      () => buildDecoderGraph(m.spec, m.weights, { maxContext: 32, logits: 'last', weights: 'int4' }),
      (e: unknown) => e instanceof QuantizationShapeError && /model\.layers\.0\.mlp\.down_proj\.weight/.test(e.message) && /width 172/.test(e.message) && /--dtype int8/.test(e.message),
    );
  });

  it('refuses quantized weights on a device without the kernel, naming the device and the alternatives', async () => {
    assert.throws(() => targetFor('webgpu', 'int8'), (e: unknown) => e instanceof DeviceError && /device webgpu/.test(e.message) && /--device cpu/.test(e.message));
    const probe = { nvidiaDriver: () => 'NVRM', cuda: async () => ({ available: true as const, detail: 'ok' }), webgpu: async () => ({ available: true as const, detail: 'ok' }), cudaNative: async () => ({ available: true as const, detail: 'ok' }) };
    await assert.rejects(resolveTarget('cuda', 'int4', probe), (e: unknown) => e instanceof DeviceError && /device cuda /.test(e.message));
    assert.deepEqual((await resolveTarget('auto', 'int8', probe)).target, { device: 'cpu', dtype: 'float32', weights: 'int8' });
  });

  it('parses int8 / int4 (and the ggml names) and lists them when a dtype is unknown', () => {
    assert.equal(parseDtypeRequest('INT8'), 'int8');
    assert.equal(parseDtypeRequest('q4_0'), 'int4');
    assert.throws(() => parseDtypeRequest('int3'), /int8, int4/);
  });
});
