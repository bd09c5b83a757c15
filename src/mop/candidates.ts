import type { ModelSpec } from '../runtime/model/spec.ts';
import { paramCost, plannedCost, type PruneCost, subBlockFixedCost } from './prune-cost.ts';
import { type LandingTarget, landOnTarget } from './width-landing.ts';
import { byScore, chunked, normalized, type ScoreNormalization, type Unit } from './width-units.ts';
import { clonePlan, keptNeurons, layerIsEmpty, plannedLayer, type PruningPlan, survivingLayers } from './pruning-plan.ts';

/**
 * The two branches of a MoP step: from the current plan, the least important layer(s) (depth) or
 * the least important KV groups and neurons (width) worth about a budget. Budgets and costs are in
 * the unit of a PruneCost (block parameters by default, or predicted decode-step time).
 */
export interface Candidate {
  branch: 'depth' | 'width';
  plan: PruningPlan;
  /** Cost this candidate removes from its parent (block parameters, or µs with a latency cost). */
  removedParams: number;
  /** What it removes, in base-model indices. */
  removed: RemovedStructures;
}

export interface RemovedStructures {
  layers?: number[];
  subBlocks?: { layer: number; part: 'attention' | 'mlp' }[];
  kvGroups?: { layer: number; groups: number[] }[];
  neurons?: { layer: number; count: number }[];
}

/**
 * Depth granularity: whole layers (default), or single sub-blocks (a layer's attention or its
 * MLP, scored by the similarity across that sub-block) — finer steps on small models, where one
 * layer is a large share of the parameters.
 */
export type DepthUnit = 'layer' | 'sublayer';

/** Depth importance per layer, and per sub-block for the 'sublayer' unit (lower = more removable). */
export interface DepthScores {
  layer: Float64Array;
  attention: Float64Array;
  mlp: Float64Array;
}

interface DepthPart {
  layer: number;
  part: 'layer' | 'attention' | 'mlp';
  cost: number;
  score: number;
}

/**
 * Depth: layers (or sub-blocks) in order of increasing importance. The first that fits under `cap`
 * (what is left to reach the target, so the step never overshoots it), then more while the total
 * stays within `budget`. The last surviving layer (sub-block) is never removed. Null when nothing fits.
 */
export function depthCandidate(base: ModelSpec, plan: PruningPlan, scores: DepthScores, budget: number, cap: number, unit: DepthUnit = 'layer', cost: PruneCost = paramCost): Candidate | null {
  const parts: DepthPart[] = [];
  for (const i of survivingLayers(plan)) {
    const p = cost.subBlocks(base, plannedLayer(base, plan, i));
    if (unit === 'layer') parts.push({ layer: i, part: 'layer', cost: p.attention + p.mlp, score: scores.layer[i]! });
    else {
      if (p.attention > 0) parts.push({ layer: i, part: 'attention', cost: p.attention, score: scores.attention[i]! });
      if (p.mlp > 0) parts.push({ layer: i, part: 'mlp', cost: p.mlp, score: scores.mlp[i]! });
    }
  }
  const order = [...parts].sort((a, b) => a.score - b.score || a.layer - b.layer || a.part.localeCompare(b.part));
  const chosen: DepthPart[] = [];
  let total = 0;
  for (const d of order) {
    if (parts.length - chosen.length <= 1) break;
    const limit = chosen.length === 0 ? cap : Math.min(cap, budget);
    if (total + d.cost > limit) continue;
    chosen.push(d);
    total += d.cost;
  }
  if (chosen.length === 0) return null;
  const next = clonePlan(plan);
  for (const d of chosen) {
    if (d.part !== 'mlp') next.layers[d.layer]!.attention = false;
    if (d.part !== 'attention') next.layers[d.layer]!.mlp = false;
  }
  const removed: RemovedStructures =
    unit === 'layer'
      ? { layers: chosen.map((d) => d.layer).sort((a, b) => a - b) }
      : { subBlocks: chosen.map((d) => ({ layer: d.layer, part: d.part as 'attention' | 'mlp' })).sort((a, b) => a.layer - b.layer || a.part.localeCompare(b.part)) };
  return { branch: 'depth', plan: next, removedParams: plannedCost(base, plan, cost) - plannedCost(base, next, cost), removed };
}

/**
 * How the width budget is shared:
 *   'param-share': attention gets budget × (its share of the remaining block parameters), the MLP
 *                  the rest; each type is ranked on its own scale;
 *   'global':      one ranking of every group and neuron by score per parameter.
 * Score normalisation: 'layer' divides each score by the mean score of its type in its layer (so
 * layers with large activations do not shield each other), 'none' uses raw scores.
 * `multiple`: a pruned layer keeps a multiple of this many MLP neurons (default 1), so its
 * matrices keep widths the kernels like (whole quantization blocks, whole SIMD vectors); neurons
 * then go in chunks, the least important first. KV groups are always whole.
 */
export interface WidthPolicy {
  split: 'param-share' | 'global';
  normalize: ScoreNormalization;
  multiple?: number;
  /** Every kept layer keeps the same KV groups and neurons count (uniform-width.ts). */
  uniform?: boolean;
}


/** Importance per unit of cost (the 'global' ranking). */
const scorePerCost = (u: Unit) => u.score / u.structureCost;

/**
 * Charge the sub-block's fixed cost to the unit that would empty it (the layer's most important),
 * so a width step cannot overshoot its budget by emptying sub-blocks. Latency costs only: with
 * parameters the fixed part is the norm's `hidden` parameters, which MoP has always left out of a
 * unit's cost (keeping parameter-budget prunes exactly as they were).
 */
function chargeFixed(units: Unit[], fixed: number, cost: PruneCost): Unit[] {
  if (units.length === 0 || fixed === 0 || cost.unit !== 'latency') return units;
  const last = units.reduce((a, u) => (u.score > a.score || (u.score === a.score && u.indices[0]! > a.indices[0]!) ? u : a));
  last.cost += fixed;
  return units;
}

/**
 * Width: the least important KV groups and neuron chunks worth about `budget`. With `landing`
 * (the step meant to finish the prune), moved onto the target where the fill missed it.
 */
export function widthCandidate(
  base: ModelSpec,
  plan: PruningPlan,
  kvScores: readonly (Float64Array | null)[],
  neuronScores: readonly (Float64Array | null)[],
  budget: number,
  policy: WidthPolicy,
  cost: PruneCost = paramCost,
  landing?: LandingTarget,
): Candidate | null {
  const kvUnits: Unit[] = [];
  const neuronUnits: Unit[] = [];
  const multiple = policy.multiple ?? 1;
  plan.layers.forEach((l, i) => {
    if (layerIsEmpty(plan, i)) return;
    const ks = kvScores[i];
    if (l.attention && ks) kvUnits.push(...chargeFixed(normalized('kv', i, l.kvGroups, ks, cost.kvGroup(base, i), policy.normalize), subBlockFixedCost(cost, base, i, 'attention'), cost));
    const ns = neuronScores[i];
    if (l.mlp && ns) neuronUnits.push(...chargeFixed(chunked(normalized('neuron', i, l.neurons, ns, cost.neuron(base), policy.normalize), multiple), subBlockFixedCost(cost, base, i, 'mlp'), cost));
  });

  const taken = new Set<Unit>();
  /** Take units in order while each one brings the total closer to `want`; returns what was taken. */
  const fill = (units: Unit[], want: number): number => {
    let got = 0;
    for (const u of units) {
      if (taken.has(u)) continue;
      if (got + u.cost / 2 > want) continue;
      taken.add(u);
      got += u.cost;
    }
    return got;
  };

  if (policy.split === 'global') {
    const all = [...kvUnits, ...neuronUnits].sort((a, b) => scorePerCost(a) - scorePerCost(b) || byScore(a, b));
    fill(all, budget);
  } else {
    const attn = kvUnits.reduce((s, u) => s + u.cost, 0);
    const mlp = neuronUnits.reduce((s, u) => s + u.cost, 0);
    if (attn + mlp === 0) return null;
    kvUnits.sort(byScore);
    neuronUnits.sort(byScore);
    const gotAttn = fill(kvUnits, (budget * attn) / (attn + mlp));
    const gotMlp = fill(neuronUnits, budget - gotAttn);
    // One type ran out (or rounded short): let the other make up the rest.
    const rest = budget - gotAttn - gotMlp;
    if (rest > 0) fill(kvUnits, rest);
  }
  const units = landing ? landOnTarget(base, plan, [...kvUnits, ...neuronUnits], taken, landing, cost, multiple) : taken;
  if (units.size === 0) return null;
  return widthRemoval(base, plan, units, cost);
}

/** The width candidate that removes `units` from `plan`, with its record of what goes. */
export function widthRemoval(base: ModelSpec, plan: PruningPlan, units: Iterable<Unit>, cost: PruneCost): Candidate {
  const next = clonePlan(plan);
  const groups = new Map<number, number[]>();
  const neurons = new Map<number, number>();
  for (const u of units) {
    if (u.kind === 'kv') {
      for (const g of u.indices) next.layers[u.layer]!.kvGroups[g] = 0;
      groups.set(u.layer, [...(groups.get(u.layer) ?? []), ...u.indices]);
    } else {
      for (const j of u.indices) next.layers[u.layer]!.neurons[j] = 0;
      neurons.set(u.layer, (neurons.get(u.layer) ?? 0) + u.indices.length);
    }
  }
  const removed: RemovedStructures = {};
  if (groups.size) removed.kvGroups = [...groups].sort((a, b) => a[0] - b[0]).map(([layer, g]) => ({ layer, groups: g.sort((a, b) => a - b) }));
  if (neurons.size) removed.neurons = [...neurons].sort((a, b) => a[0] - b[0]).map(([layer, count]) => ({ layer, count }));
  return { branch: 'width', plan: next, removedParams: plannedCost(base, plan, cost) - plannedCost(base, next, cost), removed };
}

/**
 * The smallest structure still in the plan, in the cost's unit (how close to a target any step can
 * land): one KV group, or the next neuron chunk a layer could lose under the width multiple.
 */
export function smallestUnitParams(base: ModelSpec, plan: PruningPlan, cost: PruneCost = paramCost, multiple = 1): number {
  let best = Infinity;
  plan.layers.forEach((l, i) => {
    const kept = keptNeurons(plan, i);
    if (kept > 0) best = Math.min(best, (kept % multiple || multiple) * cost.neuron(base));
    if (l.attention && l.kvGroups.some((g) => g)) best = Math.min(best, cost.kvGroup(base, i));
  });
  return best;
}
