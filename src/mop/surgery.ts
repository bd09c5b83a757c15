import { checkModel } from '../runtime/model/checkpoint-io.ts';
import { type ModelSpec, weightName } from '../runtime/model/spec.ts';
import type { Tensor, Weights } from '../runtime/model/tensor.ts';
import { clonePlan, fullPlan, plannedSpec, type PruningPlan, survivingLayers } from './pruning-plan.ts';

/**
 * Weight surgery: cut the structures a plan drops out of the tensors and the ModelSpec, exactly.
 *   KV group g of layer i: rows of W_Q for its query heads, rows g of W_K and W_V (one KV head),
 *                          and the W_O columns of those query heads; with q/k/v biases, the same
 *                          entries of each bias;
 *   neuron j:              row j of W_gate and W_up, column j of W_down;
 *   layer:                 the whole block; a layer left with neither sub-block is dropped from
 *                          the list (it is the identity), one left with one sub-block keeps it.
 * Cost is one copy of what is kept of each cut tensor; tensors nothing is cut from (embeddings,
 * norms, untouched layers) are shared with the input, not copied.
 */
export interface ModelWeights {
  spec: ModelSpec;
  weights: Weights;
}

export function applyPlan(model: ModelWeights, plan: PruningPlan): ModelWeights {
  const { spec: base, weights: src } = model;
  if (plan.layers.length !== base.layers.length) throw new Error(`plan has ${plan.layers.length} layers, model ${base.layers.length}`);
  const get = (name: string): Tensor => {
    const t = src.get(name);
    if (!t) throw new Error(`weight '${name}' missing`);
    return t;
  };
  const spec = plannedSpec(base, plan);
  const weights: Weights = new Map();
  weights.set(weightName.embed, get(weightName.embed));
  weights.set(weightName.finalNorm, get(weightName.finalNorm));
  if (!base.tiedEmbeddings) weights.set(weightName.lmHead, get(weightName.lmHead));

  survivingLayers(plan).forEach((from, to) => {
    const l = base.layers[from]!;
    const p = plan.layers[from]!;
    const out = spec.layers[to]!;
    if (out.heads > 0) {
      const D = l.headDim;
      const group = l.heads / l.kvHeads;
      const groups = indicesOf(p.kvGroups);
      const qHeads = groups.flatMap((g) => Array.from({ length: group }, (_, k) => g * group + k));
      weights.set(weightName.attnNorm(to), get(weightName.attnNorm(from)));
      weights.set(weightName.q(to), keepRowBlocks(get(weightName.q(from)), qHeads, D));
      weights.set(weightName.k(to), keepRowBlocks(get(weightName.k(from)), groups, D));
      weights.set(weightName.v(to), keepRowBlocks(get(weightName.v(from)), groups, D));
      weights.set(weightName.o(to), keepColumnBlocks(get(weightName.o(from)), qHeads, D));
      if (base.attentionBias) {
        weights.set(weightName.qBias(to), keepVectorBlocks(get(weightName.qBias(from)), qHeads, D));
        weights.set(weightName.kBias(to), keepVectorBlocks(get(weightName.kBias(from)), groups, D));
        weights.set(weightName.vBias(to), keepVectorBlocks(get(weightName.vBias(from)), groups, D));
      }
    }
    if (out.ffn > 0) {
      const neurons = indicesOf(p.neurons);
      weights.set(weightName.mlpNorm(to), get(weightName.mlpNorm(from)));
      weights.set(weightName.gate(to), keepRowBlocks(get(weightName.gate(from)), neurons, 1));
      weights.set(weightName.up(to), keepRowBlocks(get(weightName.up(from)), neurons, 1));
      weights.set(weightName.down(to), keepColumnBlocks(get(weightName.down(from)), neurons, 1));
    }
  });
  checkModel(spec, weights, 'pruned model');
  return { spec, weights };
}

/** Remove KV groups (indices of layer `layer`'s groups) from a model. */
export function removeKvGroups(model: ModelWeights, layer: number, groups: readonly number[]): ModelWeights {
  const plan = fullPlan(model.spec);
  for (const g of groups) plan.layers[layer]!.kvGroups[g] = 0;
  return applyPlan(model, plan);
}

/** Remove MLP neurons of layer `layer` from a model. */
export function removeNeurons(model: ModelWeights, layer: number, neurons: readonly number[]): ModelWeights {
  const plan = fullPlan(model.spec);
  for (const j of neurons) plan.layers[layer]!.neurons[j] = 0;
  return applyPlan(model, plan);
}

/** Remove a whole transformer block; the layers after it move up by one. */
export function removeLayer(model: ModelWeights, layer: number): ModelWeights {
  return applyPlan(model, withLayerRemoved(fullPlan(model.spec), layer));
}

/** A copy of the plan without layer i (both sub-blocks). */
export function withLayerRemoved(plan: PruningPlan, i: number): PruningPlan {
  const next = clonePlan(plan);
  next.layers[i]!.attention = false;
  next.layers[i]!.mlp = false;
  return next;
}

function indicesOf(mask: Uint8Array): number[] {
  const out: number[] = [];
  mask.forEach((m, i) => {
    if (m) out.push(i);
  });
  return out;
}

/** Keep row blocks `blocks` (each `size` rows) of a [rows, cols] matrix, in order. */
function keepRowBlocks(t: Tensor, blocks: readonly number[], size: number): Tensor {
  if (blocks.length * size === t.shape[0]) return t; // nothing cut: share, do not copy
  const cols = t.shape[1]!;
  const data = new Float32Array(blocks.length * size * cols);
  blocks.forEach((b, k) => data.set(t.data.subarray(b * size * cols, (b + 1) * size * cols), k * size * cols));
  return { shape: [blocks.length * size, cols], data };
}

/** A vector [n] as a one-column matrix [n, 1] (same data), and back. */
const asColumn = (t: Tensor): Tensor => ({ shape: [t.data.length, 1], data: t.data });
const asVector = (t: Tensor): Tensor => ({ shape: [t.data.length], data: t.data });

/** Keep blocks `blocks` (each `size` entries) of a vector, in order (a bias follows its matrix's rows). */
function keepVectorBlocks(t: Tensor, blocks: readonly number[], size: number): Tensor {
  if (blocks.length * size === t.data.length) return t;
  return asVector(keepRowBlocks(asColumn(t), blocks, size));
}

/** Keep column blocks `blocks` (each `size` columns) of a [rows, cols] matrix, in order. */
function keepColumnBlocks(t: Tensor, blocks: readonly number[], size: number): Tensor {
  const [rows, cols] = t.shape as [number, number];
  if (blocks.length * size === cols) return t;
  const outCols = blocks.length * size;
  const data = new Float32Array(rows * outCols);
  for (let r = 0; r < rows; r++) {
    const row = t.data.subarray(r * cols, (r + 1) * cols);
    blocks.forEach((b, k) => data.set(row.subarray(b * size, (b + 1) * size), r * outCols + k * size));
  }
  return { shape: [rows, outCols], data };
}

/**
 * The inverse of applyPlan for weights: `cut` (applyPlan(model, plan) after training) written back
 * into copies of `model`'s tensors at the positions the plan keeps. What the plan drops keeps the
 * model's values (masked anyway while the plan is used). MoP with per-candidate recovery keeps its
 * plans in base-model indices this way while the kept weights move.
 */
export function scatterPlan(model: ModelWeights, plan: PruningPlan, cut: ModelWeights): Weights {
  const { spec: base, weights: src } = model;
  const weights: Weights = new Map(src);
  const get = (w: Weights, name: string): Tensor => {
    const t = w.get(name);
    if (!t) throw new Error(`weight '${name}' missing`);
    return t;
  };
  weights.set(weightName.embed, get(cut.weights, weightName.embed));
  weights.set(weightName.finalNorm, get(cut.weights, weightName.finalNorm));
  if (!base.tiedEmbeddings) weights.set(weightName.lmHead, get(cut.weights, weightName.lmHead));
  survivingLayers(plan).forEach((from, to) => {
    const l = base.layers[from]!;
    const p = plan.layers[from]!;
    const out = cut.spec.layers[to]!;
    if (out.heads > 0) {
      const D = l.headDim;
      const group = l.heads / l.kvHeads;
      const groups = indicesOf(p.kvGroups);
      const qHeads = groups.flatMap((g) => Array.from({ length: group }, (_, k) => g * group + k));
      weights.set(weightName.attnNorm(from), get(cut.weights, weightName.attnNorm(to)));
      weights.set(weightName.q(from), putRowBlocks(get(src, weightName.q(from)), get(cut.weights, weightName.q(to)), qHeads, D));
      weights.set(weightName.k(from), putRowBlocks(get(src, weightName.k(from)), get(cut.weights, weightName.k(to)), groups, D));
      weights.set(weightName.v(from), putRowBlocks(get(src, weightName.v(from)), get(cut.weights, weightName.v(to)), groups, D));
      weights.set(weightName.o(from), putColumnBlocks(get(src, weightName.o(from)), get(cut.weights, weightName.o(to)), qHeads, D));
      if (base.attentionBias) {
        for (const [name, blocks] of [[weightName.qBias, qHeads], [weightName.kBias, groups], [weightName.vBias, groups]] as const) {
          weights.set(name(from), asVector(putRowBlocks(asColumn(get(src, name(from))), asColumn(get(cut.weights, name(to))), blocks, D)));
        }
      }
    }
    if (out.ffn > 0) {
      const neurons = indicesOf(p.neurons);
      weights.set(weightName.mlpNorm(from), get(cut.weights, weightName.mlpNorm(to)));
      weights.set(weightName.gate(from), putRowBlocks(get(src, weightName.gate(from)), get(cut.weights, weightName.gate(to)), neurons, 1));
      weights.set(weightName.up(from), putRowBlocks(get(src, weightName.up(from)), get(cut.weights, weightName.up(to)), neurons, 1));
      weights.set(weightName.down(from), putColumnBlocks(get(src, weightName.down(from)), get(cut.weights, weightName.down(to)), neurons, 1));
    }
  });
  return weights;
}

/** A copy of `full` with row blocks `blocks` (each `size` rows) replaced by the rows of `kept`, in order. */
function putRowBlocks(full: Tensor, kept: Tensor, blocks: readonly number[], size: number): Tensor {
  const cols = full.shape[1]!;
  const data = Float32Array.from(full.data);
  blocks.forEach((b, k) => data.set(kept.data.subarray(k * size * cols, (k + 1) * size * cols), b * size * cols));
  return { shape: full.shape, data };
}

/** A copy of `full` with column blocks `blocks` (each `size` columns) replaced by the columns of `kept`. */
function putColumnBlocks(full: Tensor, kept: Tensor, blocks: readonly number[], size: number): Tensor {
  const [rows, cols] = full.shape as [number, number];
  const keptCols = blocks.length * size;
  const data = Float32Array.from(full.data);
  for (let r = 0; r < rows; r++) {
    blocks.forEach((b, k) => data.set(kept.data.subarray(r * keptCols + k * size, r * keptCols + (k + 1) * size), r * cols + b * size));
  }
  return { shape: full.shape, data };
}
