import { type ModelSpec, weightName } from '../runtime/model/spec.ts';
import type { Tensor, Weights } from '../runtime/model/tensor.ts';
import type { ForwardTaps } from '../runtime/calibration/masked-forward.ts';

/**
 * How important each prunable structure is, from one calibration pass of the current model
 * (the base model under the current plan's masks). Width scores: higher = more important;
 * depth scores: lower = more removable. Scores of structures the plan already dropped are
 * meaningless and ignored by the caller.
 */
export interface ImportanceInputs {
  /** The base model whose structures the scores index. */
  spec: ModelSpec;
  weights: Weights;
  /** Taps summed over the calibration tokens, under the current plan. */
  taps: ForwardTaps;
}

export interface ImportanceCriterion {
  readonly name: string;
  /** Per layer, one score per KV group (null where the layer has no attention). */
  kvGroupScores(x: ImportanceInputs): (Float64Array | null)[];
  /** Per layer, one score per MLP neuron (null where the layer has no MLP). */
  neuronScores(x: ImportanceInputs): (Float64Array | null)[];
  /** Per layer, how much it changes the residual stream. */
  layerScores(x: ImportanceInputs): Float64Array;
  /** The same per sub-block (NaN where the layer has no such sub-block), for sub-layer depth pruning. */
  subBlockScores(x: ImportanceInputs): { attention: Float64Array; mlp: Float64Array };
}

/**
 * Depth (ShortGPT's Block Influence, the cheap proxy for the similarity the MoP authors use):
 * 1 − mean over tokens of cos(h_in, h_out). A layer that barely turns the hidden state is the one
 * to drop.
 */
function blockInfluence(x: ImportanceInputs): Float64Array {
  return Float64Array.from(x.taps.layerCosSum, (s) => 1 - s / x.taps.tokens);
}

function subBlockInfluence(x: ImportanceInputs): { attention: Float64Array; mlp: Float64Array } {
  const of = (sums: (number | null)[]) => Float64Array.from(sums, (s) => (s === null ? Number.NaN : 1 - s / x.taps.tokens));
  return { attention: of(x.taps.attnCosSum), mlp: of(x.taps.mlpCosSum) };
}

/**
 * AMP (arXiv 2504.21174): a structure matters as much as what it adds to the residual stream on
 * real inputs. KV group g: mean over tokens of ‖Σ_{h∈g} o_h W_O[:,h]‖₂ (measured in the graph);
 * neuron j: mean |silu(x·w_gate_j)·(x·w_up_j)| · ‖W_down[:,j]‖₂.
 */
export const ampImportance: ImportanceCriterion = {
  name: 'amp',
  kvGroupScores: (x) => x.taps.kvNormSum.map((s) => (s ? s.map((v) => v / x.taps.tokens) : null)),
  neuronScores: (x) =>
    x.taps.ffnAbsSum.map((s, i) => {
      if (!s) return null;
      const norms = columnNorms(x.weights.get(weightName.down(i))!);
      return s.map((v, j) => (v / x.taps.tokens) * norms[j]!);
    }),
  layerScores: blockInfluence,
  subBlockScores: subBlockInfluence,
};

/**
 * Weight magnitude only (no activations): a baseline to show what calibration data buys.
 * KV group: ‖W_O columns of its query heads‖_F; neuron: ‖w_gate_j‖·‖w_up_j‖·‖W_down[:,j]‖.
 */
export const magnitudeImportance: ImportanceCriterion = {
  name: 'magnitude',
  kvGroupScores: (x) =>
    x.spec.layers.map((l, i) => {
      if (l.heads === 0) return null;
      const cols = columnNorms(x.weights.get(weightName.o(i))!);
      const width = (l.heads / l.kvHeads) * l.headDim;
      return Float64Array.from({ length: l.kvHeads }, (_, g) => {
        let s = 0;
        for (let c = g * width; c < (g + 1) * width; c++) s += cols[c]! ** 2;
        return Math.sqrt(s);
      });
    }),
  neuronScores: (x) =>
    x.spec.layers.map((l, i) => {
      if (l.ffn === 0) return null;
      const down = columnNorms(x.weights.get(weightName.down(i))!);
      const gate = rowNorms(x.weights.get(weightName.gate(i))!);
      const up = rowNorms(x.weights.get(weightName.up(i))!);
      return Float64Array.from({ length: l.ffn }, (_, j) => gate[j]! * up[j]! * down[j]!);
    }),
  layerScores: blockInfluence,
  subBlockScores: subBlockInfluence,
};

export const importanceCriteria: Record<string, ImportanceCriterion> = {
  amp: ampImportance,
  magnitude: magnitudeImportance,
};

// Weight norms never change during a run (masks do not touch tensors): compute each once.
const columnNormCache = new WeakMap<Tensor, Float64Array>();
const rowNormCache = new WeakMap<Tensor, Float64Array>();

/** ‖W[:,j]‖₂ for each column j of a [rows, cols] matrix. */
export function columnNorms(t: Tensor): Float64Array {
  const hit = columnNormCache.get(t);
  if (hit) return hit;
  const [rows, cols] = t.shape as [number, number];
  const out = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c]! += t.data[r * cols + c]! ** 2;
  for (let c = 0; c < cols; c++) out[c] = Math.sqrt(out[c]!);
  columnNormCache.set(t, out);
  return out;
}

/** ‖W[r,:]‖₂ for each row r of a [rows, cols] matrix. */
export function rowNorms(t: Tensor): Float64Array {
  const hit = rowNormCache.get(t);
  if (hit) return hit;
  const [rows, cols] = t.shape as [number, number];
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += t.data[r * cols + c]! ** 2;
    out[r] = Math.sqrt(s);
  }
  rowNormCache.set(t, out);
  return out;
}
