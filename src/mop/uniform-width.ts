import type { ModelSpec } from '../runtime/model/spec.ts';
import { type Candidate, widthRemoval, type WidthPolicy } from './candidates.ts';
import { byScore, chunked, normalized, type Unit } from './width-units.ts';
import { paramCost, type PruneCost } from './prune-cost.ts';
import { keptNeurons, type PruningPlan, survivingLayers } from './pruning-plan.ts';

/**
 * The width branch under `--uniform`: every kept layer keeps the same number of KV groups and of
 * neurons, and never loses a whole sub-block, so a model with uniform layers stays uniform (its
 * Hugging Face config is then the family's plain one). A slice is one unit taken from every kept
 * layer at once: the s-th least important KV group (or neuron chunk) of each. Slices are ranked
 * by their units' mean score and taken like widthCandidate's units.
 */
interface Slice {
  kind: Unit['kind'];
  units: Unit[];
  cost: number;
  score: number;
  /** Score per unit of cost of one structure (the 'global' ranking). */
  perCost: number;
}

/** Each kept layer's units of one kind, least important first (its last unit is never sliced off). */
function layerUnits(base: ModelSpec, plan: PruningPlan, kvScores: readonly (Float64Array | null)[], neuronScores: readonly (Float64Array | null)[], policy: WidthPolicy, cost: PruneCost) {
  const kv: Unit[][] = [];
  const neuron: Unit[][] = [];
  for (const i of survivingLayers(plan)) {
    const l = plan.layers[i]!;
    const ks = kvScores[i];
    const ns = neuronScores[i];
    kv.push(l.attention && ks ? normalized('kv', i, l.kvGroups, ks, cost.kvGroup(base, i), policy.normalize).sort(byScore) : []);
    neuron.push(l.mlp && ns ? chunked(normalized('neuron', i, l.neurons, ns, cost.neuron(base), policy.normalize), policy.multiple ?? 1).sort(byScore) : []);
  }
  return { kv, neuron };
}

/** Slice s of every layer's sorted units, for every s that leaves each layer at least one unit. */
function slices(kind: Unit['kind'], perLayer: Unit[][]): Slice[] {
  const count = perLayer.length === 0 ? 0 : Math.min(...perLayer.map((u) => u.length)) - 1;
  return Array.from({ length: Math.max(0, count) }, (_, s) => {
    const units = perLayer.map((u) => u[s]!);
    const score = units.reduce((a, u) => a + u.score, 0) / units.length;
    return { kind, units, cost: units.reduce((a, u) => a + u.cost, 0), score, perCost: score / units[0]!.structureCost };
  });
}

/** widthCandidate's contract (same arguments, a candidate worth about `budget`), in slices. */
export function uniformWidthCandidate(
  base: ModelSpec,
  plan: PruningPlan,
  kvScores: readonly (Float64Array | null)[],
  neuronScores: readonly (Float64Array | null)[],
  budget: number,
  policy: WidthPolicy,
  cost: PruneCost = paramCost,
): Candidate | null {
  const units = layerUnits(base, plan, kvScores, neuronScores, policy, cost);
  const kv = slices('kv', units.kv);
  const neuron = slices('neuron', units.neuron);
  const taken: Slice[] = [];
  /** Take slices in order while each brings the total closer to `want`; returns what was taken. */
  const fill = (list: Slice[], want: number): number => {
    let got = 0;
    for (const s of list) {
      if (taken.includes(s) || got + s.cost / 2 > want) continue;
      taken.push(s);
      got += s.cost;
    }
    return got;
  };
  if (policy.split === 'global') fill([...kv, ...neuron].sort((a, b) => a.perCost - b.perCost || a.score - b.score), budget);
  else {
    const total = (perLayer: Unit[][]) => perLayer.flat().reduce((a, u) => a + u.cost, 0);
    const [attn, mlp] = [total(units.kv), total(units.neuron)];
    if (attn + mlp === 0) return null;
    const gotAttn = fill(kv, (budget * attn) / (attn + mlp));
    const gotMlp = fill(neuron, budget - gotAttn);
    const rest = budget - gotAttn - gotMlp;
    if (rest > 0) fill(kv, rest);
  }
  return taken.length === 0 ? null : widthRemoval(base, plan, taken.flatMap((s) => s.units), cost);
}

/** The smallest slice still in the plan: how close to a target a uniform prune can land. */
export function smallestUniformSlice(base: ModelSpec, plan: PruningPlan, cost: PruneCost = paramCost, multiple = 1): number {
  const alive = survivingLayers(plan);
  let neuron = 0;
  let kv = 0;
  for (const i of alive) {
    const kept = keptNeurons(plan, i);
    if (kept > multiple) neuron += (kept % multiple || multiple) * cost.neuron(base);
    if (plan.layers[i]!.attention && plan.layers[i]!.kvGroups.reduce((a, g) => a + g, 0) > 1) kv += cost.kvGroup(base, i);
  }
  const sizes = [neuron, kv].filter((x) => x > 0);
  return sizes.length ? Math.min(...sizes) : Infinity;
}
