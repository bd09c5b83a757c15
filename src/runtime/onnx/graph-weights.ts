import type { Tensor, Weights } from '../model/tensor.ts';

/** A weight by name for a graph builder; a missing one is an error naming the graph (`graph`). */
export function weightLookup(weights: Weights, graph: string): (name: string) => Tensor {
  return (name) => {
    const t = weights.get(name);
    if (!t) throw new Error(`weight '${name}' missing while building ${graph}`);
    return t;
  };
}
