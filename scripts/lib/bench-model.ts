import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { ModelSpec } from '../../src/runtime/model/spec.ts';
import { syntheticPresets, syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';

/** A benchmark's model by name: the bundled checkpoint, or a synthetic preset built in memory (seed 1). */
export async function benchModel(name: string): Promise<{ spec: ModelSpec; weights: Weights }> {
  if (name === 'bundled') return loadModel(defaultModelPath());
  const preset = syntheticPresets[name as keyof typeof syntheticPresets];
  if (!preset) throw new Error(`unknown model '${name}': use bundled or one of ${Object.keys(syntheticPresets).join(', ')}`);
  const spec = syntheticSpec(preset);
  return { spec, weights: syntheticWeights(spec, 1) };
}
