import { defaultDtype, DeviceError, type DeviceName, type DeviceRequest, type DtypeRequest, type ExecutionTarget } from './device.ts';
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
 * An explicit GPU that does not work is an error saying what to install. `auto` picks WebGPU
 * when an NVIDIA GPU is present and its adapter starts (the path that keeps the KV cache on the
 * GPU), then CUDA, and otherwise the CPU: with a warning when a GPU was there but unusable.
 * A software Vulkan device (lavapipe) is never picked by `auto`: it would be slower than the CPU
 * provider; ask for it with --device webgpu.
 */
export async function resolveTarget(device: DeviceRequest, dtype: DtypeRequest, probe: DeviceProbe): Promise<ResolvedTarget> {
  const withDtype = (d: DeviceName): ExecutionTarget => ({ device: d, dtype: dtype === 'auto' ? defaultDtype(d) : dtype });
  if (device === 'cuda-native' && dtype === 'float32') throw new DeviceError('--device cuda-native runs float16 only; drop --dtype float32 or choose another device');
  if (device === 'cpu') return { target: withDtype('cpu'), note: 'cpu requested' };
  if (device !== 'auto') {
    const status = await (device === 'cuda' ? probe.cuda() : device === 'webgpu' ? probe.webgpu() : probe.cudaNative());
    if (!status.available) throw new DeviceError(`--device ${device} is not usable here: ${status.reason}`);
    return { target: withDtype(device), note: `${device} requested: ${status.detail}` };
  }
  const driver = probe.nvidiaDriver();
  if (driver === null) return { target: withDtype('cpu'), note: 'auto: no NVIDIA GPU found, using the CPU' };
  const tried: [DeviceName, DeviceStatus][] = [];
  for (const d of ['webgpu', 'cuda'] as const) {
    const status = await (d === 'cuda' ? probe.cuda() : probe.webgpu());
    if (status.available) return { target: withDtype(d), note: `auto: NVIDIA GPU (${driver}); ${status.detail}` };
    tried.push([d, status]);
  }
  const why = tried.map(([d, s]) => `${d}: ${s.available ? 'ok' : s.reason}`).join('; ');
  return {
    target: withDtype('cpu'),
    note: 'auto: falling back to the CPU',
    warning: `an NVIDIA GPU is present (${driver}) but no GPU provider works, so the model runs on the CPU. ${why}`,
  };
}
