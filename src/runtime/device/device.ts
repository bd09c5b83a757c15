import type { FloatType } from '../onnx/onnx-model.ts';
import type { WeightQuantization } from '../model/block-quantization.ts';

/**
 * Where a model runs. Each name is one ONNX Runtime execution provider:
 *   cpu    the bundled CPU provider;
 *   webgpu the bundled WebGPU provider (Dawn over Vulkan on Linux); the KV cache stays on the GPU;
 *   cuda   the CUDA provider, present only when onnxruntime-node was installed with
 *          ONNXRUNTIME_NODE_INSTALL=cuda12; inputs and outputs cross host memory every step;
 *   cuda-native  our own CUDA decoder (src/runtime/cuda, `npm run build:cuda`), float16, KV cache
 *          on the GPU, decode steps replayed as CUDA graphs. Experimental: `auto` never picks it.
 */
export type DeviceName = 'cpu' | 'cuda' | 'webgpu' | 'cuda-native';

/** The devices ONNX Runtime runs (the native decoder does not run ONNX graphs). */
export type OrtDeviceName = Exclude<DeviceName, 'cuda-native'>;

/** Where ONNX graphs for a device run: MoP's calibration graph on `cuda-native` runs on the CPU. */
export function ortDevice(d: DeviceName): OrtDeviceName {
  return d === 'cuda-native' ? 'cpu' : d;
}

/** What an operator asks for: a device, or `auto` for the best one that works here. */
export type DeviceRequest = DeviceName | 'auto';

export const deviceRequests: readonly DeviceRequest[] = ['auto', 'cpu', 'cuda', 'webgpu', 'cuda-native'];

/**
 * Element type asked for: `auto` is float16 on a GPU and float32 on the CPU; int8 / int4 are
 * block-quantized weights (MatMulNBits) with float32 activations and cache, CPU only.
 */
export type DtypeRequest = FloatType | WeightQuantization | 'auto';

/** A resolved place to run: a device and the element type of weights, activations and KV cache. */
export interface ExecutionTarget {
  device: DeviceName;
  /** Activations and KV cache (and weights, unless `weights` is set). */
  dtype: FloatType;
  /** Projections and LM head stored block-quantized; absent: weights are `dtype`. */
  weights?: WeightQuantization;
}

export const cpuTarget: ExecutionTarget = { device: 'cpu', dtype: 'float32' };

export class DeviceError extends Error {
  override name = 'DeviceError';
}

/** Parse a --device value (syntax only; whether the device works is found out when a model opens). */
export function parseDeviceRequest(value: string): DeviceRequest {
  const v = value.trim().toLowerCase();
  const found = deviceRequests.find((d) => d === v);
  if (!found) throw new DeviceError(`unknown device '${value}'; choose one of: ${deviceRequests.join(', ')}`);
  return found;
}

const dtypeAliases: Record<string, DtypeRequest> = {
  auto: 'auto',
  float32: 'float32',
  fp32: 'float32',
  f32: 'float32',
  float16: 'float16',
  fp16: 'float16',
  f16: 'float16',
  half: 'float16',
  int8: 'int8',
  q8: 'int8',
  q8_0: 'int8',
  int4: 'int4',
  q4: 'int4',
  q4_0: 'int4',
};

/** Parse a --dtype value. */
export function parseDtypeRequest(value: string): DtypeRequest {
  const found = dtypeAliases[value.trim().toLowerCase()];
  if (!found) throw new DeviceError(`unknown dtype '${value}'; choose one of: auto, float32, float16, int8, int4`);
  return found;
}

/** The dtype `auto` means on a device. */
export function defaultDtype(device: DeviceName): FloatType {
  return device === 'cpu' ? 'float32' : 'float16';
}

export function describeTarget(t: ExecutionTarget): string {
  return t.weights ? `${t.device} (${t.weights} weights, ${t.dtype} activations)` : `${t.device} (${t.dtype})`;
}

/**
 * The target a dtype request means on a device. Quantized weights run on ONNX Runtime's CPU
 * MatMulNBits kernel only (the GPU paths here run float16 graphs or our own CUDA decoder).
 */
export function targetFor(device: DeviceName, dtype: DtypeRequest): ExecutionTarget {
  if (dtype === 'int8' || dtype === 'int4') {
    if (device !== 'cpu') throw new DeviceError(`--dtype ${dtype} needs ONNX Runtime's CPU MatMulNBits kernel, which device ${device} does not run here; use --device cpu --dtype ${dtype}, or --dtype float16 on ${device}`);
    return { device, dtype: 'float32', weights: dtype };
  }
  return { device, dtype: dtype === 'auto' ? defaultDtype(device) : dtype };
}
