import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DataType, OnnxGraphBuilder } from '../onnx/onnx-model.ts';
import type { OrtDeviceName } from './device.ts';
import { createOrtSession } from './ort-session.ts';

/** Whether a GPU device can run models here; when not, `reason` says what to install. */
export type DeviceStatus = { available: true; detail: string } | { available: false; reason: string };

/** What device resolution needs to know about this machine (injectable, so tests need no GPU). */
export interface DeviceProbe {
  /** The NVIDIA driver's version line (or that its device nodes exist), or null when there is none. */
  nvidiaDriver(): string | null;
  cuda(): Promise<DeviceStatus>;
  webgpu(): Promise<DeviceStatus>;
  /** The native CUDA decoder: its addon built and a driver with a GPU. */
  cudaNative(): Promise<DeviceStatus>;
}

/** Where onnxruntime-node keeps its native libraries (the CUDA provider is one, when installed). */
export function ortNativeDir(): string {
  const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
  return join(dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

export const installHints = {
  driver: 'no NVIDIA driver is loaded (/proc/driver/nvidia/version is absent): install the NVIDIA driver, or give the container the GPU (docker run --gpus all)',
  cudaProvider:
    "onnxruntime-node was installed without its CUDA provider: reinstall it with network access as 'ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js' (npm skips that script: package.json denies it; it needs CUDA 12 and cuDNN 9 libraries), or use the CUDA image (docker build --target cuda)",
  webgpu:
    'no WebGPU adapter: the WebGPU provider runs on Vulkan and needs a Vulkan loader (Debian: libvulkan1) and a Vulkan driver (NVIDIA: the driver with its Vulkan ICD, nvidia_icd.json; in a container add graphics to NVIDIA_DRIVER_CAPABILITIES)',
} as const;

export interface SystemProbeOptions {
  /** The native CUDA addon file that `cuda-native` would load (`--cuda-addon`); default: the built one. */
  cudaAddon?: string;
}

/** The probe of the machine this process runs on. Trials are run once and remembered. */
export function systemProbe(options: SystemProbeOptions = {}): DeviceProbe {
  return {
    nvidiaDriver: readNvidiaDriver,
    cuda: () => (cudaTrial ??= probeCuda()),
    webgpu: () => (webgpuTrial ??= probeProvider('webgpu', installHints.webgpu)),
    cudaNative: async () => {
      // Loaded only when asked for, so device/ does not depend on cuda/ (which depends on device/).
      const { loadCudaBinding } = await import('../cuda/native-binding.ts');
      const load = loadCudaBinding(options.cudaAddon);
      if (!load.binding) return { available: false, reason: load.reason };
      try {
        load.binding.init(); // context + kernels: a driver that refuses them says so here
      } catch (e) {
        return { available: false, reason: String((e as Error).message ?? e) };
      }
      const p = load.probe;
      return { available: true, detail: p.ok ? `native CUDA decoder on ${p.name} (compute ${p.computeCapability}, driver ${p.driverVersion})` : 'native CUDA decoder' };
    },
  };
}

let cudaTrial: Promise<DeviceStatus> | undefined;
let webgpuTrial: Promise<DeviceStatus> | undefined;

function readNvidiaDriver(): string | null {
  const path = '/proc/driver/nvidia/version';
  // Some containers get the device nodes without /proc/driver/nvidia.
  if (!existsSync(path)) return existsSync('/dev/nvidiactl') || existsSync('/dev/nvidia0') ? 'NVIDIA device nodes in /dev' : null;
  try {
    return readFileSync(path, 'utf8').split('\n')[0]!.trim();
  } catch {
    return null;
  }
}

async function probeCuda(): Promise<DeviceStatus> {
  if (!existsSync(join(ortNativeDir(), 'libonnxruntime_providers_cuda.so'))) return { available: false, reason: installHints.cudaProvider };
  if (readNvidiaDriver() === null) return { available: false, reason: installHints.driver };
  return probeProvider('cuda', 'the CUDA provider failed to start; check that CUDA 12 and cuDNN 9 libraries are on LD_LIBRARY_PATH');
}

/** Create and run a one-node model on the provider: the only test that every layer below works. */
async function probeProvider(device: OrtDeviceName, hint: string): Promise<DeviceStatus> {
  const g = new OnnxGraphBuilder('probe');
  g.node('Add', [g.input('a', DataType.float, [2]), g.input('b', DataType.float, [2])], ['c']);
  g.output('c', DataType.float, [2]);
  try {
    const session = await createOrtSession(g.toModel({ '': 21 }), device, { threads: 1 });
    const x = new ort.Tensor('float32', Float32Array.of(1, 2), [2]);
    const out = await session.run({ a: x, b: x });
    await session.release();
    const c = out.c!.data as Float32Array;
    if (c[0] !== 2 || c[1] !== 4) return { available: false, reason: `the ${device} provider computed 1+1 = ${c[0]}: its device is broken` };
    return { available: true, detail: `${device} provider started` };
  } catch (e) {
    const first = String((e as Error).message ?? e).split('\n')[0]!.replace(/^.*?\.cc:\d+ /, '');
    return { available: false, reason: `${hint} (onnxruntime: ${first.slice(0, 300)})` };
  }
}
