/**
 * The models benchmarks run, by name: `bundled` (stories260K, read from models/) and the synthetic
 * presets (`tiny`, `100m`, `500m`, `1b`, …: random weights of LLaMA proportions with a made-up
 * vocabulary). Synthetic weights always come from seed 1, so every script that names a model builds
 * the very same weights (bench-speedup's server and bench-llamacpp's GGUF files among them).
 */
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import { parameterCounts } from '../../src/runtime/model/spec.ts';
import { syntheticPresets, syntheticSpec, syntheticVocabulary, syntheticWeights } from '../../src/runtime/model/synthetic.ts';

export type SyntheticName = keyof typeof syntheticPresets;
export const MODEL_NAMES = ['bundled', ...(Object.keys(syntheticPresets) as SyntheticName[])] as const;
export type BenchModelName = (typeof MODEL_NAMES)[number];

export function isBenchModelName(name: string): name is BenchModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

/** Approximate f32 bytes one served variant of a synthetic preset holds (weights ×~3: loaded, ORT initializers, transposes in flight). */
export function approxServedBytes(name: BenchModelName): number {
  if (name === 'bundled') return 10e6;
  return parameterCounts(syntheticSpec(syntheticPresets[name])).total * 4 * 3;
}

/** The model's checkpoint in memory: read from disk (bundled) or generated (seed 1). */
export async function loadBenchModel(name: string): Promise<LoadedModel> {
  if (!isBenchModelName(name)) throw new Error(`unknown model '${name}': use one of ${MODEL_NAMES.join(', ')}`);
  if (name === 'bundled') return loadModel(defaultModelPath());
  const spec = syntheticSpec(syntheticPresets[name]);
  return { spec, weights: syntheticWeights(spec, 1), tokenizer: syntheticVocabulary(spec.vocabSize), format: 'hf', path: `synthetic-${name}` };
}
