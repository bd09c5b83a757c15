/**
 * A model in the form llama.cpp can run exactly, computing the same function as the original:
 *
 * - A layer with neither attention nor MLP adds nothing: it is left out (blocks renumbered).
 * - A layer with attention but no MLP gets a ZERO_MLP_WIDTH-wide MLP of zeros (norm of ones).
 *   llama.cpp's `deci` graph (src/models/deci.cpp) `continue`s when `feed_forward_length` is 0,
 *   before the attention output is added back to the residual, so an MLP-free layer would lose its
 *   attention there. The zero MLP adds exactly 0: down_proj is all zeros, so every output element
 *   is a sum of 0 · silu(g) · u = 0 terms.
 * - The first block always has attention: llama.cpp takes the head size from layer 0's head count
 *   (`n_embd_head_k = n_embd / n_head(0)`, and `n_head(0) == 0` zeroes it for every layer). An
 *   attention-free first block gets one zero KV group: v_proj and o_proj are zeros, so it adds 0.
 * - q/k/v biases (qwen2) are padded with the rows they belong to, with zeros: a padded head's
 *   query, key and value are then all zero, and its zero o_proj columns drop what it attends to.
 *   llama.cpp runs biases only in its `qwen2` graph, which has one block shape with the full head
 *   count, so such a model's blocks are all padded to the full heads and the widest MLP.
 * - Q8_0 / Q4_0 blocks hold 32 values along each row: a width that is not a whole number of blocks
 *   is padded with zero units (MLP neurons with zero gate/up rows and a zero down column; KV groups
 *   of zero q/k/v rows and zero o_proj columns), which add exactly 0 as above. A row padded this
 *   way quantizes to the very blocks our int8 graph runs on the unpadded row (it zero-pads a
 *   ragged last block the same way; block-quantization.ts).
 */
import { GGML_BLOCK } from './ggml-blocks.ts';
import { type LayerSpec, ModelFormatError, type ModelSpec, weightName } from './spec.ts';
import { tensor, type Tensor, type Weights } from './tensor.ts';

/** Width of the zero MLP written for a layer whose MLP was removed: one Q8_0 / Q4_0 block. */
export const ZERO_MLP_WIDTH = GGML_BLOCK;

export interface GgufExportOptions {
  /** Pad every row that llama.cpp stores in blocks to whole GGML_BLOCK-value blocks (Q8_0, Q4_0). */
  wholeBlocks: boolean;
}

/** A bias vector grown to `n` with zeros (a padded head's q/k/v rows are zeros, and so are their biases). */
function paddedVector(t: Tensor, n: number): Tensor {
  if (t.shape[0] === n) return t;
  const out = tensor([n]);
  out.data.set(t.data);
  return out;
}

/** `t` [rows, cols] grown to [rows', cols'] with zeros below and to the right. */
function padded(t: Tensor, rows: number, cols: number): Tensor {
  const [r, c] = t.shape as [number, number];
  if (r === rows && c === cols) return t;
  const out = tensor([rows, cols]);
  for (let i = 0; i < r; i++) out.data.set(t.data.subarray(i * c, (i + 1) * c), i * cols);
  return out;
}

const ones = (n: number): Tensor => tensor([n], new Float32Array(n).fill(1));

/** Smallest multiple of `step` that is at least `n`. */
const roundUp = (n: number, step: number): number => Math.ceil(n / step) * step;

/** KV groups after padding, so that heads · headDim (o_proj's row length) is whole blocks. */
function paddedKvHeads(l: LayerSpec, wholeBlocks: boolean): number {
  if (!wholeBlocks) return l.kvHeads;
  const group = l.heads / l.kvHeads;
  let kv = l.kvHeads;
  while ((kv * group * l.headDim) % GGML_BLOCK !== 0) kv++;
  return kv;
}

function checkExportable(spec: ModelSpec, o: GgufExportOptions): number {
  const headDims = [...new Set(spec.layers.filter((l) => l.heads > 0).map((l) => l.headDim))];
  if (headDims.length > 1) throw new ModelFormatError(`GGUF export needs one head size in every layer (llama.cpp has one key_length); this model has ${headDims.join(', ')}`);
  if (o.wholeBlocks && spec.hidden % GGML_BLOCK !== 0) {
    throw new ModelFormatError(`GGUF Q8_0 / Q4_0 export needs the hidden size to be a multiple of ${GGML_BLOCK}, this model's is ${spec.hidden}; export F16 or F32`);
  }
  return headDims[0] ?? spec.layers[0]?.headDim ?? 0;
}

/**
 * The least a block of the export form holds: KV groups of `group` query heads each, and MLP
 * neurons. Zero by default; for qwen2 every block is brought up to the full head count and the
 * widest MLP (see paddedToUniform).
 */
interface BlockFloor {
  kvHeads: number;
  group: number;
  ffn: number;
}

const NO_FLOOR: BlockFloor = { kvHeads: 0, group: 1, ffn: 0 };

/** One block of the export form: its spec and its weights under their new index `j`. */
function exportLayer(src: Weights, spec: ModelSpec, i: number, j: number, headDim: number, o: GgufExportOptions, out: Weights, blockFloor: BlockFloor): LayerSpec {
  const l = spec.layers[i]!;
  // The first block always has attention (llama.cpp takes the head size from it): one zero KV group at least.
  const floor = j === 0 && blockFloor.kvHeads === 0 ? { ...blockFloor, kvHeads: 1, group: 1 } : blockFloor;
  const h = spec.hidden;
  let heads = 0;
  let kvHeads = 0;
  if (l.heads > 0 || floor.kvHeads > 0) {
    const group = l.heads > 0 ? l.heads / l.kvHeads : floor.group;
    kvHeads = paddedKvHeads({ heads: group * Math.max(l.kvHeads, floor.kvHeads), kvHeads: Math.max(l.kvHeads, floor.kvHeads), headDim, ffn: 0 }, o.wholeBlocks);
    heads = kvHeads * group;
    const from = (name: string, shape: [number, number]) => (l.heads > 0 ? padded(src.get(name)!, ...shape) : tensor(shape));
    out.set(weightName.attnNorm(j), l.heads > 0 ? src.get(weightName.attnNorm(i))! : ones(h));
    out.set(weightName.q(j), from(weightName.q(i), [heads * headDim, h]));
    out.set(weightName.k(j), from(weightName.k(i), [kvHeads * headDim, h]));
    out.set(weightName.v(j), from(weightName.v(i), [kvHeads * headDim, h]));
    out.set(weightName.o(j), from(weightName.o(i), [h, heads * headDim]));
    if (spec.attentionBias) {
      const bias = (name: string, n: number) => (l.heads > 0 ? paddedVector(src.get(name)!, n) : tensor([n]));
      out.set(weightName.qBias(j), bias(weightName.qBias(i), heads * headDim));
      out.set(weightName.kBias(j), bias(weightName.kBias(i), kvHeads * headDim));
      out.set(weightName.vBias(j), bias(weightName.vBias(i), kvHeads * headDim));
    }
  }
  const width = Math.max(l.ffn === 0 ? ZERO_MLP_WIDTH : l.ffn, floor.ffn);
  const ffn = o.wholeBlocks ? roundUp(width, GGML_BLOCK) : width;
  if (l.ffn > 0) {
    out.set(weightName.mlpNorm(j), src.get(weightName.mlpNorm(i))!);
    out.set(weightName.gate(j), padded(src.get(weightName.gate(i))!, ffn, h));
    out.set(weightName.up(j), padded(src.get(weightName.up(i))!, ffn, h));
    out.set(weightName.down(j), padded(src.get(weightName.down(i))!, h, ffn));
  } else {
    out.set(weightName.mlpNorm(j), ones(h));
    for (const name of [weightName.gate(j), weightName.up(j)]) out.set(name, tensor([ffn, h]));
    out.set(weightName.down(j), tensor([h, ffn]));
  }
  return { heads, kvHeads, headDim, ffn };
}

/**
 * The floor that makes every block of a model with q/k/v biases the same shape: llama.cpp runs
 * such a model only as `qwen2`, whose graph sizes every block from the model's hidden size and
 * layer 0 (attn_q must be hidden × hidden), and `deci`, which varies shapes, has no biases. So
 * every block gets the full head count (hidden / head size, in KV groups of the model's group
 * size) and the widest MLP, padded with zero heads and neurons, which add exactly 0; removed
 * layers still go.
 */
function paddedToUniform(spec: ModelSpec, kept: number[], headDim: number): BlockFloor {
  const withHeads = spec.layers.find((l) => l.heads > 0);
  const group = withHeads ? withHeads.heads / withHeads.kvHeads : 1;
  const fullHeads = spec.hidden / headDim;
  if (!Number.isInteger(fullHeads) || fullHeads % group !== 0) {
    throw new ModelFormatError(
      `GGUF export of a model with q/k/v biases (qwen2) writes every block with hidden / head size = ${spec.hidden} / ${headDim} query heads, in KV groups of ${group}; that is not a whole number of groups: export --format hf`,
    );
  }
  return { kvHeads: fullHeads / group, group, ffn: Math.max(...kept.map((i) => spec.layers[i]!.ffn), ZERO_MLP_WIDTH) };
}

/**
 * The export form of a model (see the file comment): same function, every block with an MLP, the
 * first with attention, widths padded to whole blocks when asked, and for a model with q/k/v
 * biases every block the same full shape (paddedToUniform). A model already in that form comes
 * back with the same shapes and weights, so export → load → export is byte-identical.
 */
export function ggufExportForm(model: { spec: ModelSpec; weights: Weights }, o: GgufExportOptions): { spec: ModelSpec; weights: Weights } {
  const { spec, weights } = model;
  const headDim = checkExportable(spec, o);
  const kept = spec.layers.flatMap((l, i) => (l.heads > 0 || l.ffn > 0 ? [i] : []));
  const out: Weights = new Map();
  for (const name of [weightName.embed, weightName.finalNorm, weightName.lmHead]) {
    const t = weights.get(name);
    if (t) out.set(name, t);
  }
  let layers: LayerSpec[];
  if (kept.length === 0) {
    // No block left: one block of a zero attention and a zero MLP keeps llama.cpp's layout valid.
    const none: ModelSpec = { ...spec, layers: [{ heads: 0, kvHeads: 0, headDim, ffn: 0 }] };
    const floor = spec.attentionBias ? paddedToUniform(none, [0], headDim) : NO_FLOOR;
    layers = [exportLayer(weights, none, 0, 0, headDim, o, out, floor)];
  } else {
    const floor = spec.attentionBias ? paddedToUniform(spec, kept, headDim) : NO_FLOOR;
    layers = kept.map((i, j) => exportLayer(weights, spec, i, j, headDim, o, out, floor));
  }
  return { spec: { ...spec, layers }, weights: out };
}

/** Whether every block has the same shape (then the file is llama.cpp's plain `llama` architecture). */
export function uniformLayers(spec: ModelSpec): boolean {
  const l0 = spec.layers[0]!;
  return spec.layers.every((l) => l.heads === l0.heads && l.kvHeads === l0.kvHeads && l.headDim === l0.headDim && l.ffn === l0.ffn);
}
