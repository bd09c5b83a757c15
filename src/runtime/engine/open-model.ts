import { loadModel, defaultModelPath } from '../model/load.ts';
import type { LoadedModel } from '../model/loaded-model.ts';
import { parameterCounts } from '../model/spec.ts';
import { checkTokenizerMatchesModel, createTokenizer } from '../tokenizer/create.ts';
import type { Tokenizer } from '../tokenizer/types.ts';
import { describeTarget, type DeviceRequest, type DtypeRequest, type ExecutionTarget } from '../device/device.ts';
import { type DeviceProbe, systemProbe } from '../device/probe.ts';
import { resolveTarget } from '../device/resolve.ts';
import { createDecoderSession } from './create-session.ts';
import type { DecoderSession } from './decoder-session.ts';

export interface OpenModelOptions {
  /** Checkpoint file or directory; default: the bundled stories260K. */
  modelPath?: string;
  tokenizerPath?: string;
  /** Default auto: the best device that works here (device/resolve.ts). */
  device?: DeviceRequest;
  /** Default auto: float16 on a GPU, float32 on the CPU. */
  dtype?: DtypeRequest;
  /** Machine facts for device resolution; default: this machine. */
  probe?: DeviceProbe;
  /** Concurrent sequences (KV slots). Default 1. */
  maxBatch?: number;
  /** Context per sequence; default and ceiling: the model's own. */
  maxContext?: number;
  threads?: number;
  /** The native CUDA addon file for `cuda-native` (`--cuda-addon`); default: the built one. */
  cudaAddon?: string;
}

/** A model ready to generate: its checkpoint, tokenizer and an execution session. */
export interface OpenedModel {
  model: LoadedModel;
  tokenizer: Tokenizer;
  session: DecoderSession;
  target: ExecutionTarget;
  /** How the device was chosen, for the start-up log. */
  deviceNote: string;
  /** Set when a GPU is present but unusable and `auto` fell back to the CPU. */
  deviceWarning?: string;
}

/** Read a checkpoint, build its tokenizer and compile its graph into a session. */
export async function openModel(options: OpenModelOptions = {}): Promise<OpenedModel> {
  const model = await loadModel(options.modelPath ?? defaultModelPath(), options.tokenizerPath ? { tokenizerPath: options.tokenizerPath } : {});
  const tokenizer = createTokenizer(model.tokenizer);
  checkTokenizerMatchesModel(tokenizer, model.spec.vocabSize, model.path);
  const resolved = await resolveTarget(options.device ?? 'auto', options.dtype ?? 'auto', options.probe ?? systemProbe(cudaAddonOption(options)));
  // A checkpoint's own quantized blocks serve int8 / int4 graphs only; float serving drops them.
  if (!resolved.target.weights) delete model.fileBlocks;
  const session = await createDecoderSession(model.spec, model.weights, {
    maxBatch: options.maxBatch ?? 1,
    maxContext: options.maxContext ?? model.spec.maxContext,
    ...(options.threads !== undefined && { threads: options.threads }),
    ...(model.fileBlocks && { fileBlocks: model.fileBlocks }),
    target: resolved.target,
    ...cudaAddonOption(options),
  });
  return { model, tokenizer, session, target: resolved.target, deviceNote: resolved.note, ...(resolved.warning && { deviceWarning: resolved.warning }) };
}

function cudaAddonOption(options: OpenModelOptions): { cudaAddon?: string } {
  return options.cudaAddon !== undefined ? { cudaAddon: options.cudaAddon } : {};
}

/** One line that says what was loaded, for start-up logs. */
export function describeModel(m: OpenedModel): string {
  return describeLoadedModel(m.model, m.session.maxContext, m.target);
}

/** The same line for a model whose session runs elsewhere (an engine worker). */
export function describeLoadedModel(model: LoadedModel, maxContext: number, target: ExecutionTarget): string {
  const { spec } = model;
  const p = parameterCounts(spec);
  const l0 = spec.layers[0]!;
  const uniform = spec.layers.every((l) => l.heads === l0.heads && l.kvHeads === l0.kvHeads && l.ffn === l0.ffn && l.headDim === l0.headDim);
  const shape = uniform ? `${spec.layers.length} layers × (heads ${l0.heads}, kv ${l0.kvHeads}, headDim ${l0.headDim}, ffn ${l0.ffn})` : `${spec.layers.length} layers (per-layer shapes)`;
  return `${model.path} [${model.format}]: ${shape}, hidden ${spec.hidden}, vocab ${spec.vocabSize}, ${(p.total / 1e6).toFixed(2)}M params, context ${maxContext}, on ${describeTarget(target)}`;
}
