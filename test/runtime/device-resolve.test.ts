import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeviceError, parseDeviceRequest, parseDtypeRequest } from '../../src/runtime/device/device.ts';
import { gpuPaths } from '../../src/runtime/device/gpu-paths.ts';
import { type DeviceProbe, type DeviceStatus, installHints, systemProbe } from '../../src/runtime/device/probe.ts';
import { resolveTarget } from '../../src/runtime/device/resolve.ts';
import { createDecoderSession } from '../../src/runtime/engine/create-session.ts';
import { syntheticSpec } from '../../src/runtime/model/synthetic.ts';

const ok: DeviceStatus = { available: true, detail: 'started' };
const missing = (reason: string): DeviceStatus => ({ available: false, reason });

/** A machine described by hand; records which GPU paths were tried. */
function machine(o: { driver?: string; cuda?: DeviceStatus; webgpu?: DeviceStatus; native?: DeviceStatus }): DeviceProbe & { tried: string[] } {
  const tried: string[] = [];
  return {
    tried,
    nvidiaDriver: () => o.driver ?? null,
    cuda: async () => (tried.push('cuda'), o.cuda ?? missing(installHints.cudaProvider)),
    webgpu: async () => (tried.push('webgpu'), o.webgpu ?? missing(installHints.webgpu)),
    cudaNative: async () => (tried.push('cuda-native'), o.native ?? missing('the native CUDA addon is not built')),
  };
}

describe('device selection', () => {
  it('runs on the CPU in float32 when asked, without touching any GPU provider', async () => {
    const m = machine({ driver: 'NVRM 550', webgpu: ok, cuda: ok });
    const r = await resolveTarget('cpu', 'auto', m);
    assert.deepEqual(r.target, { device: 'cpu', dtype: 'float32' });
    assert.deepEqual(m.tried, []);
  });

  it('auto picks the CPU without a warning when there is no NVIDIA GPU, and never a software Vulkan device', async () => {
    const m = machine({ webgpu: ok });
    const r = await resolveTarget('auto', 'auto', m);
    assert.deepEqual(r.target, { device: 'cpu', dtype: 'float32' });
    assert.equal(r.warning, undefined);
    assert.deepEqual(m.tried, []);
  });

  it('auto prefers the CUDA EP over WebGPU, in float16, while no GPU path is verified on NVIDIA hardware, and its note says why', async () => {
    const m = machine({ driver: 'NVRM 570', webgpu: ok, cuda: ok });
    const r = await resolveTarget('auto', 'auto', m);
    assert.deepEqual(r.target, { device: 'cuda', dtype: 'float16' });
    assert.equal(r.note, 'auto: cuda (ONNX Runtime CUDA provider; no GPU path verified on NVIDIA hardware yet, CUDA EP preferred over WebGPU); NVIDIA GPU (NVRM 570); started');
    assert.deepEqual(m.tried, ['cuda']);
  });

  it('auto takes WebGPU when the CUDA EP does not start, and the note gives the CUDA EP\'s reason', async () => {
    const m = machine({ driver: 'NVRM 570', webgpu: ok });
    const r = await resolveTarget('auto', 'auto', m);
    assert.deepEqual(r.target, { device: 'webgpu', dtype: 'float16' });
    assert.match(r.note, /^auto: webgpu \(ONNX Runtime WebGPU provider over Vulkan; no GPU path verified on NVIDIA hardware yet, CUDA EP preferred over WebGPU; CUDA EP did not start: onnxruntime-node was installed without its CUDA provider/);
    assert.deepEqual(m.tried, ['cuda', 'webgpu']);
  });

  it('auto tries a path verified on NVIDIA hardware before unverified ones, and says where it was verified', async () => {
    const verifiedWebgpu = gpuPaths.map((p) => (p.device === 'webgpu' ? { ...p, verifiedOnNvidia: 'gpu-check on an H100' } : p));
    const m = machine({ driver: 'NVRM 570', webgpu: ok, cuda: ok });
    const r = await resolveTarget('auto', 'auto', m, verifiedWebgpu);
    assert.equal(r.target.device, 'webgpu');
    assert.match(r.note, /^auto: webgpu \(ONNX Runtime WebGPU provider over Vulkan; verified on NVIDIA hardware: gpu-check on an H100\)/);
    assert.deepEqual(m.tried, ['webgpu']);

    const broken = machine({ driver: 'NVRM 570', cuda: ok });
    const fallback = await resolveTarget('auto', 'auto', broken, verifiedWebgpu);
    assert.equal(fallback.target.device, 'cuda');
    assert.match(fallback.note, /^auto: cuda \(ONNX Runtime CUDA provider; not verified on NVIDIA hardware; the verified paths did not start; WebGPU did not start: no WebGPU adapter/);
  });

  it('auto falls back to the CPU with a warning that gives every reason when a GPU is present but unusable', async () => {
    const r = await resolveTarget('auto', 'auto', machine({ driver: 'NVRM version: 570.1' }));
    assert.deepEqual(r.target, { device: 'cpu', dtype: 'float32' });
    assert.match(r.warning!, /NVIDIA GPU is present \(NVRM version: 570\.1\)/);
    assert.match(r.warning!, /webgpu: no WebGPU adapter.*libvulkan1/);
    assert.match(r.warning!, /cuda: .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
  });

  it('an explicit GPU that does not work is one error that says what to install', async () => {
    await assert.rejects(resolveTarget('webgpu', 'auto', machine({})), (e: Error) => e instanceof DeviceError && /^--device webgpu is not usable here: no WebGPU adapter: .*Vulkan loader \(Debian: libvulkan1\)/.test(e.message) && !e.message.includes('\n'));
    await assert.rejects(resolveTarget('cuda', 'auto', machine({})), /--device cuda is not usable here: onnxruntime-node was installed without its CUDA provider: reinstall .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
  });

  it('uses the native CUDA decoder only when asked, float16 only, and says when its addon is missing', async () => {
    const m = machine({ driver: 'NVRM 570', native: ok });
    assert.equal((await resolveTarget('auto', 'auto', m)).target.device, 'cpu');
    assert.ok(!m.tried.includes('cuda-native'), 'auto tried the experimental native decoder');
    assert.deepEqual((await resolveTarget('cuda-native', 'auto', m)).target, { device: 'cuda-native', dtype: 'float16' });
    await assert.rejects(resolveTarget('cuda-native', 'float32', m), /--device cuda-native runs float16 only/);
    await assert.rejects(resolveTarget('cuda-native', 'auto', machine({})), /--device cuda-native is not usable here: the native CUDA addon is not built/);
  });

  it('honours an explicit dtype on any device', async () => {
    assert.deepEqual((await resolveTarget('webgpu', 'float32', machine({ webgpu: ok }))).target, { device: 'webgpu', dtype: 'float32' });
    assert.deepEqual((await resolveTarget('cpu', 'float16', machine({}))).target, { device: 'cpu', dtype: 'float16' });
  });

  it('parses device and dtype names, with aliases, and rejects others with the choices', () => {
    assert.equal(parseDeviceRequest(' CUDA '), 'cuda');
    assert.equal(parseDtypeRequest('fp16'), 'float16');
    assert.equal(parseDtypeRequest('half'), 'float16');
    assert.equal(parseDtypeRequest('f32'), 'float32');
    assert.throws(() => parseDeviceRequest('gpu0'), /unknown device 'gpu0'; choose one of: auto, cpu, cuda, webgpu, cuda-native/);
    assert.throws(() => parseDtypeRequest('int3'), /unknown dtype 'int3'; choose one of: auto, float32, float16, int8, int4/);
  });

  it("reports on this machine that the CUDA provider is not installed (the default install skips its download)", async () => {
    const status = await systemProbe().cuda();
    assert.equal(status.available, false);
    if (!status.available) assert.equal(status.reason, installHints.cudaProvider);
  });

  it('probes the native CUDA addon file it is given (--cuda-addon), and a session on it names that file when it is missing', async () => {
    const addon = '/nonexistent/elsewhere/mop_cuda.node';
    const status = await systemProbe({ cudaAddon: addon }).cudaNative();
    assert.equal(status.available, false);
    if (!status.available) assert.match(status.reason, /\/nonexistent\/elsewhere\/mop_cuda\.node is missing.*--cuda-addon/);
    const spec = syntheticSpec({ vocabSize: 16, hidden: 8, layers: 1, heads: 2, kvHeads: 1, ffn: 8, maxContext: 8 });
    await assert.rejects(
      createDecoderSession(spec, new Map(), { maxBatch: 1, maxContext: 8, target: { device: 'cuda-native', dtype: 'float16' }, cudaAddon: addon }),
      /cuda-native is not usable here: .*\/nonexistent\/elsewhere\/mop_cuda\.node is missing/,
    );
  });
});
