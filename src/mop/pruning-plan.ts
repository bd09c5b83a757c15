import type { LayerSpec, ModelSpec } from '../runtime/model/spec.ts';

/**
 * Which structures of a base model are kept: the whole state of a pruning run. Candidates are
 * plans, scored by masking the base model (masks.ts) and materialised once, at the end
 * (surgery.ts). Indices always refer to the base model's layers, KV groups and neurons.
 */
export interface LayerPlan {
  /** kvGroups[g] = 1 while KV group g (its key/value head and its query heads) is kept. */
  kvGroups: Uint8Array;
  /** neurons[j] = 1 while MLP neuron j is kept. */
  neurons: Uint8Array;
  /** The attention sub-block is kept (false after its layer is removed). */
  attention: boolean;
  /** The MLP sub-block is kept (false after its layer is removed). */
  mlp: boolean;
}

export interface PruningPlan {
  layers: LayerPlan[];
}

/** The plan that keeps everything of `spec`. */
export function fullPlan(spec: ModelSpec): PruningPlan {
  return {
    layers: spec.layers.map((l) => ({
      kvGroups: new Uint8Array(l.kvHeads).fill(1),
      neurons: new Uint8Array(l.ffn).fill(1),
      attention: l.heads > 0,
      mlp: l.ffn > 0,
    })),
  };
}

export function clonePlan(plan: PruningPlan): PruningPlan {
  return { layers: plan.layers.map((l) => ({ kvGroups: l.kvGroups.slice(), neurons: l.neurons.slice(), attention: l.attention, mlp: l.mlp })) };
}

function count(mask: Uint8Array): number {
  let n = 0;
  for (const m of mask) n += m;
  return n;
}

/** KV groups of layer i that still contribute (0 once the attention sub-block is gone). */
export function keptKvGroups(plan: PruningPlan, i: number): number {
  const l = plan.layers[i]!;
  return l.attention ? count(l.kvGroups) : 0;
}

/** MLP neurons of layer i that still contribute (0 once the MLP sub-block is gone). */
export function keptNeurons(plan: PruningPlan, i: number): number {
  const l = plan.layers[i]!;
  return l.mlp ? count(l.neurons) : 0;
}

/** A layer with neither attention nor MLP left is the identity: surgery drops it. */
export function layerIsEmpty(plan: PruningPlan, i: number): boolean {
  return keptKvGroups(plan, i) === 0 && keptNeurons(plan, i) === 0;
}

/** Base-model indices of the layers that survive. */
export function survivingLayers(plan: PruningPlan): number[] {
  return plan.layers.flatMap((_, i) => (layerIsEmpty(plan, i) ? [] : [i]));
}

/** The shape of layer i under the plan. */
export function plannedLayer(base: ModelSpec, plan: PruningPlan, i: number): LayerSpec {
  const l = base.layers[i]!;
  const kv = keptKvGroups(plan, i);
  const group = l.kvHeads > 0 ? l.heads / l.kvHeads : 0;
  return { heads: kv * group, kvHeads: kv, headDim: l.headDim, ffn: keptNeurons(plan, i) };
}

/** The ModelSpec surgery produces for the plan: empty layers dropped, every other layer its own shape. */
export function plannedSpec(base: ModelSpec, plan: PruningPlan): ModelSpec {
  return { ...base, layers: survivingLayers(plan).map((i) => plannedLayer(base, plan, i)) };
}

/**
 * Parameters of one transformer block of this shape: what parameterCounts (spec.ts) sums for it,
 * written out so budgets can be computed per structure without building specs. `attentionBias`:
 * the q/k/v projections carry biases (ModelSpec.attentionBias).
 */
export function layerParams(hidden: number, l: LayerSpec, attentionBias = false): { attention: number; mlp: number } {
  const bias = attentionBias ? (l.heads + 2 * l.kvHeads) * l.headDim : 0;
  const attention = l.heads > 0 ? hidden + (2 * l.heads + 2 * l.kvHeads) * l.headDim * hidden + bias : 0;
  const mlp = l.ffn > 0 ? hidden + 3 * l.ffn * hidden : 0;
  return { attention, mlp };
}

/** Block parameters (what MoP prunes) left under the plan. */
export function plannedBlockParams(base: ModelSpec, plan: PruningPlan): number {
  let n = 0;
  for (let i = 0; i < base.layers.length; i++) {
    const p = layerParams(base.hidden, plannedLayer(base, plan, i), base.attentionBias);
    n += p.attention + p.mlp;
  }
  return n;
}

/** Parameters one KV group of layer i costs: its query heads' and KV head's rows (and biases), its W_O columns. */
export function kvGroupParams(base: ModelSpec, i: number): number {
  const l = base.layers[i]!;
  const group = l.heads / l.kvHeads;
  return (2 * group + 2) * l.headDim * base.hidden + (base.attentionBias ? (group + 2) * l.headDim : 0);
}

/** Parameters one MLP neuron costs: a row of W_gate and W_up, a column of W_down. */
export function neuronParams(base: ModelSpec): number {
  return 3 * base.hidden;
}
