import { scoredVocabToHfTokenizer } from '../tokenizer/from-scored-vocab.ts';
import { writeHfDirectory } from './hf.ts';
import type { SafetensorsDtype } from './safetensors.ts';
import { type ModelSpec, parameterCounts } from './spec.ts';
import { syntheticPresets, syntheticSpec, syntheticVocabulary, syntheticWeights } from './synthetic.ts';

export type SyntheticPresetName = keyof typeof syntheticPresets;

export function isSyntheticPreset(name: string): name is SyntheticPresetName {
  return Object.hasOwn(syntheticPresets, name);
}

export interface SyntheticDirectoryOptions {
  preset: SyntheticPresetName;
  /** Seed of the weights; 1 is what the benchmarks use. */
  seed?: number;
  dtype?: SafetensorsDtype;
  /** Passed to the writer (tests force sharding with a small value). */
  maxShardBytes?: number;
}

/**
 * A synthetic preset as a Hugging Face directory — the benchmarks' random weights (same generator,
 * same default seed) and the synthetic vocabulary as tokenizer.json — so a server or another tool
 * can load it from disk like any checkpoint.
 */
export async function writeSyntheticDirectory(dir: string, options: SyntheticDirectoryOptions): Promise<{ spec: ModelSpec; parameters: number }> {
  const spec = syntheticSpec(syntheticPresets[options.preset]);
  const weights = syntheticWeights(spec, options.seed ?? 1);
  const tokenizer = scoredVocabToHfTokenizer(syntheticVocabulary(spec.vocabSize));
  await writeHfDirectory({ spec, weights }, dir, {
    tokenizerJson: tokenizer.tokenizerJson,
    tokenizerConfig: tokenizer.tokenizerConfig,
    ...(options.dtype !== undefined && { dtype: options.dtype }),
    ...(options.maxShardBytes !== undefined && { maxShardBytes: options.maxShardBytes }),
  });
  return { spec, parameters: parameterCounts(spec).total };
}
