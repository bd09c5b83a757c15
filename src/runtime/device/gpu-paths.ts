import type { DeviceName } from './device.ts';

/** One way of running a model on an NVIDIA GPU, and what is known about it. */
export interface GpuPath {
  device: Exclude<DeviceName, 'cpu'>;
  /** What it is, in the start-up log. */
  description: string;
  /** Short name in the log's reasons ("CUDA EP preferred over WebGPU"). */
  label: string;
  /**
   * Where scripts/gpu-check.sh has passed on real NVIDIA hardware (GPU, driver, date), or null
   * while it never has. Set it only from a gpu-check result: `auto` trusts it.
   */
  verifiedOnNvidia: string | null;
  /** Whether `auto` may pick it at all. */
  auto: boolean;
}

/**
 * Every GPU path, in `auto`'s order of preference among paths that are equally verified. The CUDA
 * EP comes before WebGPU because it is ONNX Runtime's own most used GPU provider, while WebGPU
 * on NVIDIA goes through Dawn and Vulkan; WebGPU keeps the KV cache on the GPU, which could win
 * once both are measured. Until a path is verified, this order is a judgement, not a measurement.
 */
export const gpuPaths: readonly GpuPath[] = [
  { device: 'cuda', description: 'ONNX Runtime CUDA provider', label: 'CUDA EP', verifiedOnNvidia: null, auto: true },
  { device: 'webgpu', description: 'ONNX Runtime WebGPU provider over Vulkan', label: 'WebGPU', verifiedOnNvidia: null, auto: true },
  { device: 'cuda-native', description: 'native CUDA decoder (experimental)', label: 'native CUDA', verifiedOnNvidia: null, auto: false },
];

/** The paths `auto` tries, in order: verified ones first, then the table's order. */
export function autoOrder(paths: readonly GpuPath[] = gpuPaths): GpuPath[] {
  const eligible = paths.filter((p) => p.auto);
  return [...eligible.filter((p) => p.verifiedOnNvidia !== null), ...eligible.filter((p) => p.verifiedOnNvidia === null)];
}

/** Why `auto` tries `chosen` where it stands in `order`: its verification, or that none is verified. */
export function preferenceReason(chosen: GpuPath, order: readonly GpuPath[]): string {
  if (chosen.verifiedOnNvidia !== null) return `verified on NVIDIA hardware: ${chosen.verifiedOnNvidia}`;
  const unverified = order.filter((p) => p.verifiedOnNvidia === null).map((p) => p.label);
  const ranking = unverified.length > 1 ? `, ${unverified.join(' preferred over ')}` : '';
  if (order.some((p) => p.verifiedOnNvidia !== null)) return `not verified on NVIDIA hardware; the verified paths did not start${ranking}`;
  return `no GPU path verified on NVIDIA hardware yet${ranking}`;
}
