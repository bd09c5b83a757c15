import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CudaEmulator } from '../../scripts/cuda/kernel-emulator.ts';
import type { CudaBinding } from '../../src/runtime/cuda/native-binding.ts';
import { NativeCudaSession } from '../../src/runtime/cuda/native-session.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { ModelSpec } from '../../src/runtime/model/spec.ts';
import { syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { argmax, maxAbsDiff } from '../helpers/logits.ts';
import { runMop } from '../helpers/run-cli.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const HALF_TOL = 0.25;

/** Prefill three slots (in chunks of 4), then batched greedy decode; compare with the CPU in float32. */
async function compareWithCpu(spec: ModelSpec, weights: Weights, cuda: CudaBinding, prompts: number[][], steps: number): Promise<number> {
  const ref = await ModelSession.create(spec, weights, { maxBatch: prompts.length, maxContext: 64, threads: 1 });
  const gpu = await NativeCudaSession.create(spec, weights, { maxBatch: prompts.length, maxContext: 64, prefillChunk: 4, binding: cuda });
  try {
    let worst = 0;
    const next: number[] = [];
    for (const [slot, p] of prompts.entries()) {
      const a = await ref.prefill(slot, p);
      const b = await gpu.prefill(slot, p);
      worst = Math.max(worst, maxAbsDiff(a, b));
      next.push(argmax(a));
    }
    for (let step = 0; step < steps; step++) {
      // The last slot sits out odd steps: batches of different sizes, slots at different lengths.
      const entries = next.map((token, slot) => ({ slot, token })).filter((e) => e.slot !== prompts.length - 1 || step % 2 === 0);
      const a = await ref.decode(entries);
      const b = await gpu.decode(entries);
      a.forEach((x, i) => {
        worst = Math.max(worst, maxAbsDiff(x, b[i]!));
        next[entries[i]!.slot] = argmax(x);
      });
    }
    return worst;
  } finally {
    await ref.release();
    await gpu.release();
  }
}

describe('native CUDA decoder (kernels emulated in JavaScript: checks the orchestration, not the CUDA code)', () => {
  it('matches the CPU on stories260K within float16 tolerance, replaying decode steps as CUDA graphs', async () => {
    const m = await loadModel(defaultModelPath());
    const cuda = new CudaEmulator();
    const worst = await compareWithCpu(m.spec, m.weights, cuda, [[1, 403, 407, 261, 378, 500, 12], [1, 300, 301], [1, 50, 60, 70, 80]], 12);
    assert.ok(worst <= HALF_TOL, `max |Δlogit| ${worst}`);
    assert.ok(worst > 0, 'identical to float32: the weights were not stored as float16');
    assert.ok(cuda.graphLaunches >= 12, `decode steps ran as graphs ${cuda.graphLaunches} times`);
  });

  it('with cudaGraphs false runs decode steps kernel by kernel, with the logits of graph replay', async () => {
    const m = await loadModel(defaultModelPath());
    const logits: Float32Array[][] = [];
    const launches: number[] = [];
    for (const cudaGraphs of [true, false]) {
      const cuda = new CudaEmulator();
      const gpu = await NativeCudaSession.create(m.spec, m.weights, { maxBatch: 1, maxContext: 64, prefillChunk: 4, binding: cuda, cudaGraphs });
      try {
        const out = [await gpu.prefill(0, [1, 403, 407, 261])];
        for (const token of [378, 500, 12]) out.push(...(await gpu.decode([{ slot: 0, token }])));
        logits.push(out);
      } finally {
        await gpu.release();
      }
      launches.push(cuda.graphLaunches);
    }
    assert.deepEqual(launches, [3, 0]);
    logits[0]!.forEach((x, i) => assert.deepEqual(logits[1]![i], x));
  });

  it('runs pruned shapes: per-layer heads and ffn, layers without attention or without an MLP', async () => {
    const base = syntheticSpec({ vocabSize: 96, hidden: 32, layers: 4, heads: 4, kvHeads: 2, ffn: 48, maxContext: 64 });
    const spec: ModelSpec = {
      ...base,
      layers: [
        { heads: 4, kvHeads: 2, headDim: 8, ffn: 48 },
        { heads: 2, kvHeads: 1, headDim: 8, ffn: 0 },
        { heads: 0, kvHeads: 0, headDim: 8, ffn: 20 },
        { heads: 3, kvHeads: 3, headDim: 8, ffn: 36 },
      ],
      tiedEmbeddings: true,
    };
    const worst = await compareWithCpu(spec, syntheticWeights(spec, 5), new CudaEmulator(), [[1, 5, 9, 33, 2, 17], [1, 70]], 8);
    assert.ok(worst <= 0.05, `max |Δlogit| ${worst}`);
  });

  it('refuses bad rows and positions past the context with clear errors', async () => {
    const m = await loadModel(defaultModelPath());
    const gpu = await NativeCudaSession.create(m.spec, m.weights, { maxBatch: 2, maxContext: 8, binding: new CudaEmulator() });
    await assert.rejects(gpu.prefill(2, [1]), /slot 2 is outside 0\.\.1/);
    await assert.rejects(gpu.prefill(0, Array(9).fill(1)), /sequence of 9 tokens exceeds the context of 8 tokens/);
    await assert.rejects(gpu.decode([{ slot: 0, token: 1 }, { slot: 0, token: 2 }]), /slot 0 appears twice/);
    await assert.rejects(gpu.prefill(0, [1, m.spec.vocabSize]), /row 1: token id 512 outside the vocabulary 0\.\.511/);
    await gpu.release();
    const long = syntheticSpec({ vocabSize: 64, hidden: 16, layers: 1, heads: 2, kvHeads: 1, ffn: 32, maxContext: 65536 });
    await assert.rejects(
      NativeCudaSession.create(long, syntheticWeights(long, 1), { maxBatch: 1, maxContext: 65536, binding: new CudaEmulator() }),
      /context 65536 is too long for the native attention kernel, .*use --context 40960 or less/,
    );
  });
});

describe('native CUDA addon build (src/runtime/cuda/build.sh)', () => {
  it('skips cleanly, exit 0, where nvcc is absent', () => {
    const r = spawnSync('bash', [path.join(root, 'src/runtime/cuda/build.sh')], { env: { ...process.env, NVCC: '/nonexistent/nvcc', PATH: '/usr/bin:/bin' }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /mop cuda: skipped: nvcc not found/);
  });

  const nvcc = spawnSync('bash', ['-c', 'command -v nvcc || ls /usr/local/cuda/bin/nvcc'], { encoding: 'utf8' }).status === 0;
  it('builds an addon that loads without a GPU and says why it cannot run', { skip: nvcc ? false : 'no nvcc on this machine' }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mop-cuda-'));
    const r = spawnSync('bash', [path.join(root, 'src/runtime/cuda/build.sh')], { env: { ...process.env, MOP_CUDA_BUILD_DIR: dir }, encoding: 'utf8', timeout: 180_000 });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /mop cuda: built/);
    const binding = createRequire(import.meta.url)(path.join(dir, 'mop_cuda.node')) as CudaBinding;
    const probe = binding.probe();
    if (probe.ok) {
      assert.ok(probe.name.length > 0); // a GPU machine: the driver answered
    } else {
      assert.match(probe.error, /libcuda\.so\.1|no GPU|cuInit/);
      assert.throws(() => binding.init(), /libcuda\.so\.1|no GPU|cuInit/);
      assert.throws(() => binding.alloc(16), /CUDA is not initialised|libcuda/);
    }
  });

  it('reports a driver that cannot start every time, never as usable (stub libcuda.so.1)', { skip: nvcc ? false : 'no nvcc on this machine' }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mop-cuda-stub-'));
    const build = spawnSync('bash', [path.join(root, 'src/runtime/cuda/build.sh')], { env: { ...process.env, MOP_CUDA_BUILD_DIR: dir }, encoding: 'utf8', timeout: 180_000 });
    assert.equal(build.status, 0, build.stderr);
    // Every entry point the addon resolves; cuInit says "no device" like a driver without a GPU.
    const names = ['cuDriverGetVersion', 'cuDeviceGetCount', 'cuDeviceGet', 'cuDeviceGetName', 'cuDeviceGetAttribute', 'cuDeviceTotalMem_v2', 'cuDevicePrimaryCtxRetain', 'cuCtxSetCurrent', 'cuModuleLoadData', 'cuModuleGetFunction', 'cuFuncSetAttribute', 'cuMemAlloc_v2', 'cuMemFree_v2', 'cuMemsetD8Async', 'cuMemcpyHtoD_v2', 'cuMemcpyDtoHAsync_v2', 'cuStreamCreate', 'cuStreamSynchronize', 'cuLaunchKernel', 'cuStreamBeginCapture_v2', 'cuStreamEndCapture', 'cuGraphInstantiateWithFlags', 'cuGraphLaunch', 'cuGraphExecDestroy', 'cuGraphDestroy'];
    const source = [...names.map((n) => `int ${n}(void) { return 999; }`), 'int cuInit(unsigned f) { return 100; }', 'int cuGetErrorString(int e, const char** s) { *s = "no CUDA-capable device is detected"; return 0; }'].join('\n');
    fs.writeFileSync(path.join(dir, 'stub.c'), source);
    const cc = spawnSync('gcc', ['-shared', '-fPIC', '-o', path.join(dir, 'libcuda.so.1'), path.join(dir, 'stub.c')], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const script = `const b = require(${JSON.stringify(path.join(dir, 'mop_cuda.node'))}); const out = [b.probe(), b.probe()]; try { b.init(); out.push('init ok'); } catch (e) { out.push(e.message); } console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, LD_LIBRARY_PATH: dir }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const [first, second, init] = JSON.parse(r.stdout) as [{ ok: boolean; error: string }, { ok: boolean; error: string }, string];
    assert.deepEqual(first, { ok: false, error: 'cuInit failed: no CUDA-capable device is detected (100); check that the GPU is visible (nvidia-smi)' });
    assert.deepEqual(second, first);
    assert.equal(init, first.error);
  });

  it('mop generate --device cuda-native says what is missing in one line', async () => {
    const r = await runMop(['generate', '--device', 'cuda-native', '--prompt', 'x'], { MOP_CUDA_ADDON: '/nonexistent/mop_cuda.node' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mop: error: --device cuda-native is not usable here: the native CUDA addon is not built \(\/nonexistent\/mop_cuda\.node is missing\): run 'npm run build:cuda'/);
  });

  it('mop generate and mop serve load the addon --cuda-addon names, and say so when it is missing', async () => {
    for (const command of ['generate', 'serve']) {
      const r = await runMop([command, '--device', 'cuda-native', '--cuda-addon', '/nonexistent/flagged/mop_cuda.node', ...(command === 'serve' ? ['--port', '0', '--host', '127.0.0.1'] : ['--prompt', 'x'])], {});
      assert.equal(r.code, 1, `${command}: ${r.stderr}`);
      assert.match(r.stderr, /--device cuda-native is not usable here: the native CUDA addon is not built \(\/nonexistent\/flagged\/mop_cuda\.node is missing\)/, command);
    }
  });
});
