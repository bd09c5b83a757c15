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
  if (spec.attentionBias) {
    throw new ModelFormatError(`GGUF export of a model with attention biases (${spec.family ?? 'qwen2'}) is not supported; export it as a Hugging Face directory (--format hf)`);
  }
  const headDims = [...new Set(spec.layers.filter((l) => l.heads > 0).map((l) => l.headDim))];
  if (headDims.length > 1) throw new ModelFormatError(`GGUF export needs one head size in every layer (llama.cpp has one key_length); this model has ${headDims.join(', ')}`);
  if (o.wholeBlocks && spec.hidden % GGML_BLOCK !== 0) {
    throw new ModelFormatError(`GGUF Q8_0 / Q4_0 export needs the hidden size to be a multiple of ${GGML_BLOCK}, this model's is ${spec.hidden}; export F16 or F32`);
  }
  return headDims[0] ?? spec.layers[0]?.headDim ?? 0;
}

/** One block of the export form: its spec and its weights under their new index `j`. */
function exportLayer(src: Weights, spec: ModelSpec, i: number, j: number, headDim: number, o: GgufExportOptions, out: Weights): LayerSpec {
  const l = spec.layers[i]!;
  const h = spec.hidden;
  let heads = 0;
  let kvHeads = 0;
  if (l.heads > 0) {
    kvHeads = paddedKvHeads(l, o.wholeBlocks);
    heads = kvHeads * (l.heads / l.kvHeads);
    out.set(weightName.attnNorm(j), src.get(weightName.attnNorm(i))!);
    out.set(weightName.q(j), padded(src.get(weightName.q(i))!, heads * headDim, h));
    out.set(weightName.k(j), padded(src.get(weightName.k(i))!, kvHeads * headDim, h));
    out.set(weightName.v(j), padded(src.get(weightName.v(i))!, kvHeads * headDim, h));
    out.set(weightName.o(j), padded(src.get(weightName.o(i))!, h, heads * headDim));
  } else if (j === 0) {
    kvHeads = paddedKvHeads({ heads: 1, kvHeads: 1, headDim, ffn: 0 }, o.wholeBlocks);
    heads = kvHeads;
    out.set(weightName.attnNorm(j), ones(h));
    for (const name of [weightName.q(j), weightName.k(j), weightName.v(j)]) out.set(name, tensor([kvHeads * headDim, h]));
    out.set(weightName.o(j), tensor([h, heads * headDim]));
  }
  const ffn = l.ffn === 0 ? ZERO_MLP_WIDTH : o.wholeBlocks ? roundUp(l.ffn, GGML_BLOCK) : l.ffn;
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
 * The export form of a model (see the file comment): same function, every block with an MLP, the
 * first with attention, widths padded to whole blocks when asked. A model already in that form
 * comes back with the same shapes and weights, so export → load → export is byte-identical.
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
    layers = [exportLayer(weights, none, 0, 0, headDim, o, out)];
  } else {
    layers = kept.map((i, j) => exportLayer(weights, spec, i, j, headDim, o, out));
  }
  return { spec: { ...spec, layers }, weights: out };
}

/** Whether every block has the same shape (then the file is llama.cpp's plain `llama` architecture). */
export function uniformLayers(spec: ModelSpec): boolean {
  const l0 = spec.layers[0]!;
  return spec.layers.every((l) => l.heads === l0.heads && l.kvHeads === l0.kvHeads && l.headDim === l0.headDim && l.ffn === l0.ffn);
}
