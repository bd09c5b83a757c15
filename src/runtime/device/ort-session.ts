import os from 'node:os';
import * as ort from 'onnxruntime-node';
import type { OnnxModel } from '../onnx/onnx-model.ts';
import type { OrtDeviceName } from './device.ts';

/** Where an output is returned: host memory, or left on the GPU (WebGPU only in onnxruntime-node). */
export type OutputLocation = 'cpu' | 'gpu-buffer';

export interface OrtSessionOptions {
  /** Intra-op threads of the CPU provider (and of CPU fallback nodes); default: all cores. */
  threads?: number;
  /** Outputs to leave on the device, by name; everything else comes back to host memory. */
  outputLocations?: Record<string, OutputLocation>;
  /** Record ONNX Runtime's per-op profile; written to `<prefix>_<date>.json` at endProfiling (scripts/experiments/bench-op-profile.ts). */
  profilePrefix?: string;
  /**
   * Let idle intra-op pool threads spin instead of sleeping (ONNX Runtime's own default). Default
   * false: on a small machine spinning threads steal the cores that the next run, another
   * variant's session or the event loop needs (docs/architecture.md, "Spinning pool threads").
   */
  spin?: boolean;
}

/**
 * One ONNX Runtime session for a model on a device: the only place that turns a DeviceName into
 * execution-provider options. Nodes a GPU provider cannot run fall back to the CPU provider.
 */
export function createOrtSession(model: OnnxModel, device: OrtDeviceName, options: OrtSessionOptions = {}): Promise<ort.InferenceSession> {
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: executionProviders(device),
    graphOptimizationLevel: 'all',
    intraOpNumThreads: options.threads ?? os.availableParallelism(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    externalData: model.externalData.map((e) => ({ path: e.path, data: e.data })),
    extra: { session: { intra_op: { allow_spinning: options.spin ? '1' : '0' }, inter_op: { allow_spinning: '0' } } },
  };
  if (options.outputLocations) sessionOptions.preferredOutputLocation = options.outputLocations;
  if (options.profilePrefix !== undefined) Object.assign(sessionOptions, { enableProfiling: true, profileFilePrefix: options.profilePrefix });
  return ort.InferenceSession.create(model.bytes, sessionOptions);
}

function executionProviders(device: OrtDeviceName): ort.InferenceSession.ExecutionProviderConfig[] {
  switch (device) {
    case 'cpu':
      return ['cpu'];
    case 'cuda':
      return [{ name: 'cuda', deviceId: 0 }, 'cpu'];
    case 'webgpu':
      return [{ name: 'webgpu' }, 'cpu'];
  }
}
