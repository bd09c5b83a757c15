import type { DepthScores } from './candidates.ts';
import { type PruningPlan, survivingLayers } from './pruning-plan.ts';

/**
 * How the depth branch ranks layers:
 *   score:         our block-influence score (1 − cosine across the block, from calibration taps);
 *   third-to-last: the paper's positional rule — the third-to-last surviving layer goes first, then
 *                  its neighbours outward (fourth-to-last, second-to-last, …) when a step takes more.
 */
export const depthRules = ['score', 'third-to-last'] as const;
export type DepthRule = (typeof depthRules)[number];

/** DepthScores (lower = removed first) that put the third-to-last surviving layer first. */
export function thirdToLastScores(plan: PruningPlan): DepthScores {
  const n = plan.layers.length;
  const alive = survivingLayers(plan);
  const pick = Math.max(0, alive.length - 3);
  const layer = new Float64Array(n).fill(Infinity);
  alive.forEach((i, k) => {
    // Earlier layers before later ones at equal distance: the last layers matter most for the output.
    layer[i] = k === pick ? 0 : k < pick ? 2 * (pick - k) - 1 : 2 * (k - pick);
  });
  return { layer, attention: layer.slice(), mlp: layer.slice() };
}
