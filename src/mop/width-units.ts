/** 'layer': each score divided by the mean score of its type in its layer; 'none': raw scores. */
export type ScoreNormalization = 'layer' | 'none';

/** A KV group, or a chunk of a layer's neurons (one neuron when the multiple is 1). */
export interface Unit {
  kind: 'kv' | 'neuron';
  layer: number;
  /** Base indices of what the unit removes (one KV group; one or more neurons). */
  indices: number[];
  /**
   * What removing it saves: its structures, plus the sub-block's fixed cost for the unit that
   * goes last (its layer's most important), since that one takes the sub-block with it.
   */
  cost: number;
  /** Cost of one of its structures (for ranking by importance per cost). */
  structureCost: number;
  /** Importance per structure (a chunk: the mean of its neurons'). */
  score: number;
}

/** Least important first; ties by layer, then index. */
export const byScore = (a: Unit, b: Unit): number => a.score - b.score || a.layer - b.layer || a.indices[0]! - b.indices[0]!;

/** Layer `layer`'s kept structures of one kind as units, scores normalised per `mode`. */
export function normalized(kind: Unit['kind'], layer: number, kept: Uint8Array, scores: Float64Array, cost: number, mode: ScoreNormalization): Unit[] {
  const units: Unit[] = [];
  let sum = 0;
  kept.forEach((k, index) => {
    if (!k) return;
    units.push({ kind, layer, indices: [index], cost, structureCost: cost, score: scores[index]! });
    sum += scores[index]!;
  });
  const mean = sum / Math.max(units.length, 1);
  if (mode === 'layer' && mean > 0) for (const u of units) u.score /= mean;
  return units;
}

/**
 * One layer's neuron units in chunks for a width multiple: least important first; the first chunk
 * takes the remainder (kept mod multiple) so that every cut leaves a multiple, the others take
 * `multiple` each. A chunk's neurons are each at least as important as the previous chunk's, so
 * chunks rank in the order they must go.
 */
export function chunked(units: Unit[], multiple: number): Unit[] {
  if (multiple <= 1 || units.length === 0) return units;
  const sorted = [...units].sort((a, b) => a.score - b.score || a.indices[0]! - b.indices[0]!);
  const out: Unit[] = [];
  let at = 0;
  let size = sorted.length % multiple || multiple;
  while (at < sorted.length) {
    const part = sorted.slice(at, at + size);
    out.push({
      kind: 'neuron',
      layer: part[0]!.layer,
      indices: part.map((u) => u.indices[0]!),
      cost: part.reduce((s, u) => s + u.cost, 0),
      structureCost: part[0]!.structureCost,
      score: part.reduce((s, u) => s + u.score, 0) / part.length,
    });
    at += size;
    size = multiple;
  }
  return out;
}
