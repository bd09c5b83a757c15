import type { LayerSpec, ModelSpec } from '../runtime/model/spec.ts';
import type { PruneCost } from './prune-cost.ts';
import { plannedLayer, type PruningPlan } from './pruning-plan.ts';
import { byScore, type Unit } from './width-units.ts';

/** Where the step that finishes a prune must land: `remaining` (cost units) within `tolerance`. */
export interface LandingTarget {
  remaining: number;
  tolerance: number;
}

/** How many units a swap tries before landing gives up. */
const MAX_SWAPS = 32;

/**
 * A set of units and the exact cost it removes from the plan (the layers' costs before and after,
 * as plannedCost counts them, not the units' estimates), kept up to date one unit at a time.
 */
class Removal {
  readonly set: Set<Unit>;
  total = 0;
  private readonly kv = new Map<number, number>();
  private readonly neurons = new Map<number, number>();

  constructor(
    private readonly base: ModelSpec,
    private readonly plan: PruningPlan,
    private readonly cost: PruneCost,
    /** Each layer's neurons before the step (the width multiple's reference). */
    private readonly keptNeurons: ReadonlyMap<number, number>,
    private readonly multiple: number,
    units: Iterable<Unit> = [],
    /** Each touched layer's shape and cost in the plan, shared by copies (the plan does not change while landing). */
    private readonly before = new Map<number, { spec: LayerSpec; cost: number }>(),
  ) {
    this.set = new Set();
    for (const u of units) this.add(u);
  }

  copy(): Removal {
    return new Removal(this.base, this.plan, this.cost, this.keptNeurons, this.multiple, this.set, this.before);
  }

  /** What adding (sign 1) or giving back (−1) `u` changes the total by. */
  delta(u: Unit, sign: 1 | -1): number {
    return this.layerCost(u.layer, u, sign) - this.layerCost(u.layer);
  }

  add(u: Unit): void {
    this.total += this.delta(u, 1);
    this.counts(u).set(u.layer, (this.counts(u).get(u.layer) ?? 0) + u.indices.length);
    this.set.add(u);
  }

  remove(u: Unit): void {
    this.total += this.delta(u, -1);
    this.counts(u).set(u.layer, this.counts(u).get(u.layer)! - u.indices.length);
    this.set.delete(u);
  }

  /** Whether adding (or giving back) `u` leaves its layer a multiple of the width multiple (or without neurons). */
  keepsMultiple(u: Unit, sign: 1 | -1): boolean {
    if (u.kind === 'kv' || this.multiple <= 1) return true;
    const kept = this.keptNeurons.get(u.layer)! - (this.neurons.get(u.layer) ?? 0) - sign * u.indices.length;
    return kept === this.keptNeurons.get(u.layer) || kept % this.multiple === 0;
  }

  private counts(u: Unit): Map<number, number> {
    return u.kind === 'kv' ? this.kv : this.neurons;
  }

  /** Layer i's cost removed by this set, with `u` added or given back. */
  private layerCost(i: number, u?: Unit, sign: 1 | -1 = 1): number {
    const before = this.layerBefore(i);
    const n = (kind: Unit['kind']) => ((kind === 'kv' ? this.kv : this.neurons).get(i) ?? 0) + (u?.kind === kind ? sign * u.indices.length : 0);
    const group = before.spec.kvHeads > 0 ? before.spec.heads / before.spec.kvHeads : 0;
    const kvHeads = before.spec.kvHeads - n('kv');
    const c = this.cost.subBlocks(this.base, { heads: kvHeads * group, kvHeads, headDim: before.spec.headDim, ffn: before.spec.ffn - n('neuron') });
    return before.cost - c.attention - c.mlp;
  }

  private layerBefore(i: number): { spec: LayerSpec; cost: number } {
    let b = this.before.get(i);
    if (!b) {
      const spec = plannedLayer(this.base, this.plan, i);
      const c = this.cost.subBlocks(this.base, spec);
      this.before.set(i, (b = { spec, cost: c.attention + c.mlp }));
    }
    return b;
  }
}

/**
 * The finishing width step's units, moved onto the target when the greedy fill missed it by more
 * than the tolerance. The fill ranks by importance and can only add, and a unit's cost is an
 * estimate (the unit that empties a sub-block carries its fixed latency cost), so with coarse
 * units about it overshoots, or stops short with nothing small enough left to add. Landing, on
 * exact costs:
 *   1. while past the target, gives back the coarsest units (the most important of equal cost first);
 *   2. adds the least important units that bring it closer;
 *   3. if still off by more than the tolerance, swaps: adds the least important unit that crosses
 *      the target, then gives back the most important units while that brings it closer.
 * A neuron chunk goes only where its layer keeps a multiple of the width multiple. Returns `taken`
 * unchanged where nothing lands within the tolerance.
 */
export function landOnTarget(base: ModelSpec, plan: PruningPlan, units: readonly Unit[], taken: ReadonlySet<Unit>, target: LandingTarget, cost: PruneCost, multiple: number): ReadonlySet<Unit> {
  const kept = new Map<number, number>();
  for (const u of units) if (u.kind === 'neuron') kept.set(u.layer, (kept.get(u.layer) ?? 0) + u.indices.length);
  const start = new Removal(base, plan, cost, kept, multiple, taken);
  const off = (r: Removal) => r.total - target.remaining;
  if (Math.abs(off(start)) <= target.tolerance) return taken;
  const r = start.copy();
  const dropped = dropCoarse(r, target, multiple);
  addCloser(r, units.filter((u) => !r.set.has(u) && !dropped.has(u)).sort(byScore), target);
  if (Math.abs(off(r)) <= target.tolerance) return r.set;
  const swaps = units.filter((u) => !r.set.has(u) && r.keepsMultiple(u, 1)).sort(byScore).slice(0, MAX_SWAPS);
  for (const u of swaps) {
    const s = r.copy();
    s.add(u);
    if (off(s) < -target.tolerance) continue;
    giveBackCloser(s, target, multiple, u);
    if (Math.abs(off(s)) <= target.tolerance) return s.set;
  }
  return taken;
}

/** Units that can go back one at a time without breaking the width multiple: KV groups and whole chunks. */
const givable = (u: Unit, multiple: number) => u.kind === 'kv' || multiple <= 1 || u.indices.length === multiple;

/** While past the target by more than the tolerance, give back the costliest units; returns what went back. */
function dropCoarse(r: Removal, target: LandingTarget, multiple: number): Set<Unit> {
  const dropped = new Set<Unit>();
  const coarsest = [...r.set].filter((u) => givable(u, multiple)).sort((a, b) => b.cost - a.cost || byScore(b, a));
  for (const u of coarsest) {
    if (r.total - target.remaining <= target.tolerance) break;
    r.remove(u);
    dropped.add(u);
  }
  return dropped;
}

/** Add units in order while each brings the total closer to the target (never past it by more than the tolerance). */
function addCloser(r: Removal, order: readonly Unit[], target: LandingTarget): void {
  for (const u of order) {
    const gap = target.remaining - r.total;
    if (gap <= 0) return;
    if (!r.keepsMultiple(u, 1)) continue;
    const next = gap - r.delta(u, 1);
    if (Math.abs(next) < Math.abs(gap) && next >= -target.tolerance) r.add(u);
  }
}

/** Give back the most important units (not `keep`) while each brings the total closer to the target. */
function giveBackCloser(r: Removal, target: LandingTarget, multiple: number, keep: Unit): void {
  const back = [...r.set].filter((u) => u !== keep && givable(u, multiple)).sort((a, b) => byScore(b, a));
  for (const u of back) {
    const over = r.total - target.remaining;
    if (over <= 0) return;
    const next = over + r.delta(u, -1);
    if (Math.abs(next) < Math.abs(over) && next >= -target.tolerance) r.remove(u);
  }
}
