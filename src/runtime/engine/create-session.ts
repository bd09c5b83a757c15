import { cpuTarget } from '../device/device.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import type { DecoderSession } from './decoder-session.ts';
import { ModelSession, type ModelSessionOptions } from './ort-decoder-session.ts';

export interface DecoderSessionOptions extends ModelSessionOptions {
  /** The native CUDA addon file for `cuda-native` (`--cuda-addon`); default: build/cuda/mop_cuda.node. */
  cudaAddon?: string;
}

/**
 * A session for a model on its target: the native CUDA decoder for `cuda-native`, else ONNX Runtime.
 * The native backend is loaded only when asked for: cuda/ builds on engine/, not the other way round.
 */
export async function createDecoderSession(spec: ModelSpec, weights: Weights, options: DecoderSessionOptions): Promise<DecoderSession> {
  const target = options.target ?? cpuTarget;
  if (target.device === 'cuda-native') {
    if (options.logits === 'all') throw new RangeError("cuda-native returns last-position logits only; evaluate with 'mop eval'");
    const { NativeCudaSession } = await import('../cuda/native-session.ts');
    return NativeCudaSession.create(spec, weights, {
      maxBatch: options.maxBatch,
      maxContext: options.maxContext,
      ...(options.prefillChunk !== undefined && { prefillChunk: options.prefillChunk }),
      ...(options.cudaAddon !== undefined && { addonPath: options.cudaAddon }),
    });
  }
  return ModelSession.create(spec, weights, options);
}
