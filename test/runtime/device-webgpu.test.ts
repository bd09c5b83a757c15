import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { loadCalibration } from '../../src/mop/calibration.ts';
import { runMop } from '../../src/mop/mop.ts';
import { systemProbe } from '../../src/runtime/device/probe.ts';
import { DeviceKvCache } from '../../src/runtime/engine/device-kv-cache.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { FloatType } from '../../src/runtime/onnx/onnx-model.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { argmax, maxAbsDiff } from '../helpers/logits.ts';

/**
 * The WebGPU path end to end: KV cache resident on the device, batched decode, prefill of one
 * slot, capacity growth and shrink. Needs a WebGPU adapter: on a machine without a GPU, Mesa's
 * lavapipe (Debian bookworm-backports mesa-vulkan-drivers ≥ 24, which .ci/run installs) gives a
 * software one. Without any adapter the suite is skipped and says why.
 */
const status = await systemProbe().webgpu();
const skip = status.available ? false : `no WebGPU adapter here: ${status.reason}`;

describe('WebGPU device with the KV cache on the GPU', { skip }, () => {
  let m: LoadedModel;
  before(async () => {
    m = await loadModel(defaultModelPath());
  });

  const compare = async (dtype: FloatType, tolerance: number) => {
    const ref = await ModelSession.create(m.spec, m.weights, { maxBatch: 3, maxContext: 256, threads: 1 });
    const gpu = await ModelSession.create(m.spec, m.weights, { maxBatch: 3, maxContext: 256, threads: 1, target: { device: 'webgpu', dtype } });
    try {
      assert.ok(gpu.cache instanceof DeviceKvCache);
      const binding = await gpu.cache.bindDecode(3, 2);
      assert.ok(Object.values(binding.feeds).every((t) => t.location === 'gpu-buffer'), 'the cache is not on the GPU');
      assert.equal(gpu.cache.decodeRows(1), 3, 'a GPU decode binds every slot');
      // A long prompt in slot 1 (prefilled in chunks) takes the cache past its initial 128 positions.
      const prompts = [[1, 403, 407, 261, 378], Array.from({ length: 120 }, (_, i) => 1 + ((i * 37) % 500)), [1, 300, 301]];
      let worst = 0;
      const next: number[] = [];
      for (const [slot, p] of prompts.entries()) {
        const a = await ref.prefill(slot, p);
        worst = Math.max(worst, maxAbsDiff(a, await gpu.prefill(slot, p)));
        next.push(argmax(a));
      }
      for (let step = 0; step < 24; step++) {
        // Slot 2 sits out every third step: it rides along in the GPU batch without advancing.
        const entries = next.map((token, slot) => ({ slot, token })).filter((e) => e.slot !== 2 || step % 3 !== 0);
        const a = await ref.decode(entries);
        const b = await gpu.decode(entries);
        a.forEach((x, i) => {
          worst = Math.max(worst, maxAbsDiff(x, b[i]!));
          next[entries[i]!.slot] = argmax(x);
        });
      }
      assert.equal(gpu.cache.capacity, 256, 'the cache did not grow past 128 positions');
      // Short sequences only: the cache shrinks back, keeping what slot 0 holds.
      for (const s of [1, 2]) {
        ref.reset(s);
        gpu.reset(s);
      }
      const [a] = await ref.decode([{ slot: 0, token: next[0]! }]);
      const [b] = await gpu.decode([{ slot: 0, token: next[0]! }]);
      worst = Math.max(worst, maxAbsDiff(a!, b!));
      assert.equal(gpu.cache.capacity, 128, 'the cache did not shrink back');
      assert.ok(worst <= tolerance, `${dtype}: max |Δlogit| ${worst} > ${tolerance}`);
    } finally {
      await ref.release();
      await gpu.release();
    }
  };

  it('matches the CPU in float32 (max |Δlogit| ≤ 1e-3) through prefill, batched decode, growth and shrink', () => compare('float32', 1e-3));
  it('matches the CPU in float16 within float16 tolerance (≤ 0.25)', () => compare('float16', 0.25));

  it('prunes with MoP on the GPU to the same model as on the CPU (calibration passes on the device)', async () => {
    const calibration = await loadCalibration(createTokenizer(m.tokenizer), { samples: 4, seqLen: 48, seed: 0 });
    const on = async (device: 'cpu' | 'webgpu') => (await runMop({ spec: m.spec, weights: m.weights }, { target: 0.3, calibration, seed: 0, threads: 1, device })).report;
    const cpu = await on('cpu');
    const gpu = await on('webgpu');
    assert.deepEqual(gpu.result.layers, cpu.result.layers);
    assert.deepEqual(gpu.result.kept, cpu.result.kept);
    assert.ok(Math.abs(gpu.result.finalScore - cpu.result.finalScore) <= 1e-3 * Math.abs(cpu.result.finalScore), `${gpu.result.finalScore} vs ${cpu.result.finalScore}`);
  });
});
