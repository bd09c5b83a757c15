import { byScore, type Unit } from './width-units.ts';

/** Where the step that finishes a prune must land: `remaining` (cost units) within `tolerance`. */
export interface LandingTarget {
  remaining: number;
  tolerance: number;
}

/** How many coarse units a swap tries before landing gives up (each try is a few plan copies). */
const MAX_SWAPS = 32;

/** The exact cost a set of units removes (from the plan it would leave, not the units' estimates). */
type RemovedCost = (set: ReadonlySet<Unit>) => number;

/**
 * The finishing width step's units, moved onto the target when the greedy fill missed it by more
 * than the tolerance. The fill ranks by importance and can only add, and a unit's cost is an
 * estimate (the unit that empties a sub-block carries its fixed latency cost), so with coarse
 * units about it overshoots, or stops short with nothing small enough left to add. Landing:
 *   1. gives back the coarsest units while the set is past the target;
 *   2. adds the least important units that still fit;
 *   3. if still short, swaps: adds the least important unit that crosses the target, then gives
 *      back the most important fine units it took until it is within the tolerance.
 * Every move is checked with `removedCost`. Returns `taken` unchanged where nothing lands.
 */
export function landOnTarget(units: readonly Unit[], taken: ReadonlySet<Unit>, target: LandingTarget, removedCost: RemovedCost, multiple: number): ReadonlySet<Unit> {
  const within = (set: ReadonlySet<Unit>) => Math.abs(removedCost(set) - target.remaining) <= target.tolerance;
  if (within(taken)) return taken;
  const set = new Set(taken);
  const dropped = dropCoarse(set, target, removedCost, multiple);
  addFine(units.filter((u) => !set.has(u) && !dropped.has(u)).sort(byScore), set, target, removedCost);
  if (within(set)) return set;
  const swaps = units.filter((u) => !set.has(u)).sort(byScore).slice(0, MAX_SWAPS);
  for (const u of swaps) {
    const landed = giveBack(new Set([...set, u]), target, removedCost, multiple);
    if (landed) return landed;
  }
  return taken;
}

/** Units that can go back one at a time without breaking the width multiple: KV groups and whole chunks. */
const givable = (u: Unit, multiple: number) => u.kind === 'kv' || multiple <= 1 || u.indices.length === multiple;

/** While past the target, give back the costliest units; returns what went back. */
function dropCoarse(set: Set<Unit>, target: LandingTarget, removedCost: RemovedCost, multiple: number): Set<Unit> {
  const dropped = new Set<Unit>();
  const coarsest = [...set].filter((u) => givable(u, multiple)).sort((a, b) => b.cost - a.cost || byScore(a, b));
  for (const u of coarsest) {
    if (removedCost(set) - target.remaining <= target.tolerance) break;
    set.delete(u);
    dropped.add(u);
  }
  return dropped;
}

/** Add units in order while each keeps the set from passing the target by more than the tolerance. */
function addFine(order: readonly Unit[], set: Set<Unit>, target: LandingTarget, removedCost: RemovedCost): void {
  let gap = target.remaining - removedCost(set);
  for (const u of order) {
    if (gap <= target.tolerance) return;
    if (u.cost > gap + target.tolerance) continue;
    set.add(u);
    const next = target.remaining - removedCost(set);
    if (next < -target.tolerance) set.delete(u);
    else gap = next;
  }
}

/** From a set past the target, give back the most important units that keep it from falling short; the set once within tolerance, else null. */
function giveBack(set: Set<Unit>, target: LandingTarget, removedCost: RemovedCost, multiple: number): Set<Unit> | null {
  const back = [...set].filter((u) => givable(u, multiple)).sort(byScore).reverse();
  let over = removedCost(set) - target.remaining;
  for (const u of back) {
    if (Math.abs(over) <= target.tolerance) return set;
    if (over < -target.tolerance) return null;
    if (u.structureCost * u.indices.length > over + target.tolerance) continue;
    set.delete(u);
    const next = removedCost(set) - target.remaining;
    if (next < -target.tolerance) set.add(u);
    else over = next;
  }
  return Math.abs(over) <= target.tolerance ? set : null;
}
