import type { TokenizerSource } from '../tokenizer/types.ts';
import type { FileBlocks } from './block-quantization.ts';
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
  /**
   * The checkpoint's own quantized matrices (GGUF Q8_0 / Q4_0). An int8 / int4 graph runs them as
   * they are wherever `weights` still hold exactly their values; anything pruned or fine-tuned
   * since is quantized afresh, so a derived model may carry them along harmlessly.
   */
  fileBlocks?: FileBlocks;
}
