import { DeviceError, type DeviceName, type DeviceRequest, type DtypeRequest, type ExecutionTarget, targetFor } from './device.ts';
import { autoOrder, type GpuPath, gpuPaths, preferenceReason } from './gpu-paths.ts';
import type { DeviceProbe, DeviceStatus } from './probe.ts';

export interface ResolvedTarget {
  target: ExecutionTarget;
  /** Why `auto` chose what it chose; a warning when a GPU is present but could not be used. */
  note: string;
  warning?: string;
}

/**
 * Turn a --device / --dtype request into a target that works here.
 *
 * An explicit GPU that does not work is an error saying what to install. `auto`, when an NVIDIA
 * GPU is present, tries the GPU paths in gpu-paths.ts's order (verified on NVIDIA hardware first,
 * then the CUDA EP before WebGPU) and takes the first that starts; otherwise the CPU, with a
 * warning when a GPU was there but unusable. The note says why. A software Vulkan device
 * (lavapipe) is never picked by `auto`: it would be slower than the CPU provider; ask for it with
 * --device webgpu.
 */
export async function resolveTarget(device: DeviceRequest, dtype: DtypeRequest, probe: DeviceProbe, paths: readonly GpuPath[] = gpuPaths): Promise<ResolvedTarget> {
  const withDtype = (d: DeviceName): ExecutionTarget => targetFor(d, dtype);
  // Quantized weights run on the CPU kernel only: `auto` with int8/int4 means the CPU.
  if (device === 'auto' && (dtype === 'int8' || dtype === 'int4')) return { target: withDtype('cpu'), note: `auto: --dtype ${dtype} runs on the CPU (MatMulNBits)` };
  const statusOf = (d: Exclude<DeviceName, 'cpu'>): Promise<DeviceStatus> => (d === 'cuda' ? probe.cuda() : d === 'webgpu' ? probe.webgpu() : probe.cudaNative());
  if (device === 'cuda-native' && dtype === 'float32') throw new DeviceError('--device cuda-native runs float16 only; drop --dtype float32 or choose another device');
  if (device !== 'auto' && device !== 'cpu' && device !== 'cuda-native') withDtype(device); // a dtype the device cannot run fails before any probing
  if (device === 'cpu') return { target: withDtype('cpu'), note: 'cpu requested' };
  if (device !== 'auto') {
    const status = await statusOf(device);
    if (!status.available) throw new DeviceError(`--device ${device} is not usable here: ${status.reason}`);
    return { target: withDtype(device), note: `${device} requested: ${status.detail}` };
  }
  const driver = probe.nvidiaDriver();
  if (driver === null) return { target: withDtype('cpu'), note: 'auto: no NVIDIA GPU found, using the CPU' };
  const order = autoOrder(paths);
  const failed: [GpuPath, string][] = [];
  for (const path of order) {
    const status = await statusOf(path.device);
    if (status.available) {
      const skipped = failed.map(([p, reason]) => `; ${p.label} did not start: ${reason}`).join('');
      return { target: withDtype(path.device), note: `auto: ${path.device} (${path.description}; ${preferenceReason(path, order)}${skipped}); NVIDIA GPU (${driver}); ${status.detail}` };
    }
    failed.push([path, status.reason]);
  }
  const why = failed.map(([p, reason]) => `${p.device}: ${reason}`).join('; ');
  return {
    target: withDtype('cpu'),
    note: 'auto: falling back to the CPU',
    warning: `an NVIDIA GPU is present (${driver}) but no GPU provider works, so the model runs on the CPU. ${why}`,
  };
}
