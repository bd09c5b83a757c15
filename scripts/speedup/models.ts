/**
 * The models the speedup benchmarks serve: `bundled` (stories260K, read from models/) and the
 * synthetic presets (`100m`, `1b`: random weights of LLaMA proportions with a made-up vocabulary,
 * as scripts/bench-serve.ts builds them). Factored here so bench-speedup and bench-llamacpp build
 * the very same model (same seed → same weights) without importing bench-serve.ts (which runs on
 * import).
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


/** The model's checkpoint in memory: read from disk (bundled) or generated (seed 1, as bench-serve). */
export async function loadBenchModel(name: BenchModelName): Promise<LoadedModel> {
  if (name === 'bundled') return loadModel(defaultModelPath());
  const spec = syntheticSpec(syntheticPresets[name]);
  return { spec, weights: syntheticWeights(spec, 1), tokenizer: syntheticVocabulary(spec.vocabSize), format: 'hf', path: `synthetic-${name}` };
}
