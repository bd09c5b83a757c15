import type { TokenizerSource } from '../tokenizer/types.ts';
import type { ModelSpec } from './spec.ts';
import type { Weights } from './tensor.ts';

export type CheckpointFormat = 'llama2c' | 'hf' | 'gguf';

/** A checkpoint read into memory: spec, float32 weights in rotate-half layout, tokenizer description. */
export interface LoadedModel {
  spec: ModelSpec;
  weights: Weights;
  tokenizer: TokenizerSource;
  format: CheckpointFormat;
  /** The file or directory it was read from. */
  path: string;
  /** Jinja chat template, when the checkpoint ships one. */
  chatTemplate?: string;
}
