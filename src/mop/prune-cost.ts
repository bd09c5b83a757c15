import type { LayerSpec, ModelSpec } from '../runtime/model/spec.ts';
import { kvGroupParams, layerParams, neuronParams, plannedLayer, type PruningPlan } from './pruning-plan.ts';

/**
 * What a MoP budget counts. `params`: transformer-block parameters (the paper's measure).
 * `latency`: predicted decode-step time in microseconds, from a profile of the serving engine
 * (latency-profile.ts), so a layer's fixed per-step cost counts and the target is a share of the
 * blocks' step time.
 */
export type BudgetUnit = 'params' | 'latency';
export const budgetUnits: readonly BudgetUnit[] = ['params', 'latency'];

/** The cost of each prunable structure, in one unit. Plans keep base indices, so costs take them. */
export interface PruneCost {
  readonly unit: BudgetUnit;
  /** Cost of a block of this shape, per sub-block (0 for an absent one). */
  subBlocks(base: ModelSpec, layer: LayerSpec): { attention: number; mlp: number };
  /** What one more or one fewer KV group of base layer i costs (the sub-block staying). */
  kvGroup(base: ModelSpec, i: number): number;
  /** What one more or one fewer MLP neuron costs (the sub-block staying). */
  neuron(base: ModelSpec): number;
}

export const paramCost: PruneCost = {
  unit: 'params',
  subBlocks: (base, l) => layerParams(base.hidden, l, base.attentionBias),
  kvGroup: (base, i) => kvGroupParams(base, i),
  neuron: (base) => neuronParams(base),
};

/**
 * A decode-step time model per sub-block: a fixed cost while the sub-block exists (its norm, its
 * kernels' launch and per-op overhead) plus a cost per parameter it reads. Fitted by
 * measureLatencyProfile; any positive numbers make a valid model.
 */
export interface LatencyCoefficients {
  attentionFixedUs: number;
  attentionUsPerParam: number;
  mlpFixedUs: number;
  mlpUsPerParam: number;
}

export function latencyCost(c: LatencyCoefficients): PruneCost {
  return {
    unit: 'latency',
    subBlocks: (base, l) => {
      const p = layerParams(base.hidden, l, base.attentionBias);
      return {
        attention: p.attention > 0 ? c.attentionFixedUs + c.attentionUsPerParam * p.attention : 0,
        mlp: p.mlp > 0 ? c.mlpFixedUs + c.mlpUsPerParam * p.mlp : 0,
      };
    },
    kvGroup: (base, i) => c.attentionUsPerParam * kvGroupParams(base, i),
    neuron: (base) => c.mlpUsPerParam * neuronParams(base),
  };
}

/**
 * What a sub-block costs beyond its structures: the last KV group (neuron) of base layer i takes
 * this with it when it goes. For paramCost the norm's parameters; for a latency cost its fixed time.
 */
export function subBlockFixedCost(cost: PruneCost, base: ModelSpec, i: number, part: 'attention' | 'mlp'): number {
  const l = base.layers[i]!;
  if (part === 'attention') {
    const group = l.kvHeads > 0 ? l.heads / l.kvHeads : 1;
    return cost.subBlocks(base, { heads: group, kvHeads: 1, headDim: l.headDim, ffn: 0 }).attention - cost.kvGroup(base, i);
  }
  return cost.subBlocks(base, { heads: 0, kvHeads: 0, headDim: l.headDim, ffn: 1 }).mlp - cost.neuron(base);
}

/** Cost of the blocks the plan keeps (for paramCost: plannedBlockParams). */
export function plannedCost(base: ModelSpec, plan: PruningPlan, cost: PruneCost): number {
  let n = 0;
  for (let i = 0; i < base.layers.length; i++) {
    const c = cost.subBlocks(base, plannedLayer(base, plan, i));
    n += c.attention + c.mlp;
  }
  return n;
}
