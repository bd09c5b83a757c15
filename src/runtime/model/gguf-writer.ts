/**
 * Writing a model as a GGUF v3 file llama.cpp loads: F32, F16, Q8_0 or Q4_0 matrices (the quantized
 * ones hold exactly the blocks our int8 / int4 graphs run, ggml-blocks.ts), Q/K rows back in the
 * interleaved RoPE layout GGUF keeps (gguf-llama.ts). The model is first put in its export form
 * (gguf-export-form.ts: same function, shapes llama.cpp runs exactly). A model whose blocks then
 * all have one shape is written as llama.cpp's `llama` architecture; any other as `deci`
 * (Nemotron-NAS), which reads feed_forward_length, head_count and head_count_kv per layer; a
 * model with q/k/v biases as `qwen2` (one shape in every layer).
 */
import { basename } from 'node:path';
import { checkModel, f32Bytes } from './checkpoint-io.ts';
import { GGML_BLOCK, quantizeQ4_0, quantizeQ8_0 } from './ggml-blocks.ts';
import { DEFAULT_ALIGNMENT, GgmlType, type GgufKv, GgufType } from './gguf-container.ts';
import { ggufExportForm, uniformLayers } from './gguf-export-form.ts';
import { type GgufContents, type GgufTensorData, writeGgufFile } from './gguf-file-writer.ts';
import { ggufTensorNames, llama3RopeFactors } from './gguf-llama.ts';
import { setTokenizerMetadata } from './gguf-tokenizer.ts';
import { encodeF16 } from './half.ts';
import { rotateHalfToInterleaved } from './rope-layout.ts';
import { ModelFormatError, type ModelSpec } from './spec.ts';
import type { Tensor, Weights } from './tensor.ts';
import type { TokenizerSource } from '../tokenizer/types.ts';

export { type GgufContents, type GgufTensorData, writeGgufFile } from './gguf-file-writer.ts';

export type GgufWriteDtype = 'f32' | 'f16' | 'q8_0' | 'q4_0';

/** llama_ftype of a file written as `dtype` (ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_Q4_0). */
const fileType: Record<GgufWriteDtype, number> = { f32: 0, f16: 1, q8_0: 7, q4_0: 2 };

export const ggufWriteDtypes: readonly GgufWriteDtype[] = ['f32', 'f16', 'q8_0', 'q4_0'];

export function isGgufWriteDtype(v: string): v is GgufWriteDtype {
  return (ggufWriteDtypes as readonly string[]).includes(v);
}

/** One matrix (or vector) encoded for the file in `dtype`; norm vectors stay F32, as llama.cpp's converter keeps them. */
function encodeTensor(name: string, t: Tensor, dtype: GgufWriteDtype): { type: number; data: Uint8Array } {
  if (t.shape.length !== 2 || dtype === 'f32') return { type: GgmlType.F32, data: f32Bytes(t.data) };
  if (dtype === 'f16') return { type: GgmlType.F16, data: encodeF16(t.data) };
  // The export form padded every quantized row to whole blocks; anything else is a bug, not a fallback.
  if (t.shape[1]! % GGML_BLOCK !== 0) throw new Error(`GGUF writer: ${name} rows of ${t.shape[1]} are not whole ${GGML_BLOCK}-value blocks`);
  return dtype === 'q8_0' ? { type: GgmlType.Q8_0, data: quantizeQ8_0(t.data) } : { type: GgmlType.Q4_0, data: quantizeQ4_0(t.data) };
}

export interface WriteGgufOptions {
  /**
   * Storage for matrices (norm vectors stay F32). Default 'f32'. q8_0 / q4_0: blocks of 32 along
   * each row; widths that are not whole blocks are zero-padded exactly (gguf-export-form.ts).
   */
  dtype?: GgufWriteDtype;
  /** Any tokenizer we load; a tokenizer.json is converted (gguf-tokenizer.ts). */
  tokenizer: TokenizerSource;
  /** general.name (default: the file name without extension). */
  name?: string;
  chatTemplate?: string;
}

const u32 = (value: number): GgufKv => ({ type: GgufType.UINT32, value });
const f32 = (value: number): GgufKv => ({ type: GgufType.FLOAT32, value });
const str = (value: string): GgufKv => ({ type: GgufType.STRING, value });
const i32s = (value: number[]): GgufKv => ({ type: GgufType.ARRAY, itemType: GgufType.INT32, value });

/**
 * The llama.cpp architecture of a model in export form: `qwen2` for q/k/v biases (the export
 * form pads such a model to one block shape: that graph sizes every block from layer 0, and
 * `deci` has no biases), `llama` for one shape, `deci` for per-layer shapes.
 */
function architectureOf(spec: ModelSpec): 'llama' | 'deci' | 'qwen2' {
  const uniform = uniformLayers(spec);
  if (spec.attentionBias) {
    // The export form gives such a model one block shape (gguf-export-form.ts): anything else is a bug.
    if (!uniform) throw new Error('GGUF writer: a model with q/k/v biases reached the writer with per-layer shapes');
    return 'qwen2';
  }
  return uniform ? 'llama' : 'deci';
}

/** general.* and the architecture's hyperparameters: scalars for `llama` / `qwen2`, per-layer arrays for `deci`. */
function modelMetadata(spec: ModelSpec, dtype: GgufWriteDtype, name: string): Map<string, GgufKv> {
  const a = architectureOf(spec);
  const uniform = a !== 'deci';
  const l0 = spec.layers[0]!;
  const perLayer = (f: (l: ModelSpec['layers'][number]) => number): GgufKv => (uniform ? u32(f(l0)) : i32s(spec.layers.map(f)));
  const md = new Map<string, GgufKv>();
  md.set('general.architecture', str(a));
  md.set('general.name', str(name));
  md.set('general.file_type', u32(fileType[dtype]));
  md.set('general.alignment', u32(DEFAULT_ALIGNMENT));
  md.set(`${a}.vocab_size`, u32(spec.vocabSize));
  md.set(`${a}.context_length`, u32(spec.maxContext));
  md.set(`${a}.embedding_length`, u32(spec.hidden));
  md.set(`${a}.block_count`, u32(spec.layers.length));
  md.set(`${a}.feed_forward_length`, perLayer((l) => l.ffn));
  md.set(`${a}.attention.head_count`, perLayer((l) => l.heads));
  md.set(`${a}.attention.head_count_kv`, perLayer((l) => l.kvHeads));
  md.set(`${a}.attention.key_length`, u32(l0.headDim));
  md.set(`${a}.attention.value_length`, u32(l0.headDim));
  md.set(`${a}.attention.layer_norm_rms_epsilon`, f32(spec.normEps));
  md.set(`${a}.rope.dimension_count`, u32(l0.headDim));
  md.set(`${a}.rope.freq_base`, f32(spec.rope.theta));
  const scaling = spec.rope.scaling;
  if (scaling?.type === 'linear') {
    md.set(`${a}.rope.scaling.type`, str('linear'));
    md.set(`${a}.rope.scaling.factor`, f32(scaling.factor));
  }
  if (scaling?.type === 'llama3') md.set(`${a}.rope.scaling.original_context_length`, u32(scaling.originalMaxPositionEmbeddings));
  return md;
}

/**
 * The metadata and tensors writeGguf would write, for callers that adjust them (e.g. tests that
 * quantize one tensor). Any layer shapes: see gguf-export-form.ts for how llama.cpp is made to
 * compute exactly the same function.
 */
export function buildGgufContents(model: { spec: ModelSpec; weights: Weights }, options: WriteGgufOptions & { name: string }): GgufContents {
  checkModel(model.spec, model.weights, 'GGUF writer input');
  const dtype = options.dtype ?? 'f32';
  if (!isGgufWriteDtype(dtype)) throw new ModelFormatError(`GGUF export: unsupported dtype '${String(dtype)}' (supported: ${ggufWriteDtypes.join(', ')})`);
  const { spec, weights } = ggufExportForm(model, { wholeBlocks: dtype === 'q8_0' || dtype === 'q4_0' });
  const md = modelMetadata(spec, dtype, options.name);
  setTokenizerMetadata(md, options.tokenizer, spec, options.chatTemplate);

  const tensors: GgufTensorData[] = [];
  const scaling = spec.rope.scaling;
  if (scaling?.type === 'llama3') {
    const factors = llama3RopeFactors(spec.rope.theta, spec.layers[0]!.headDim, scaling);
    tensors.push({ name: 'rope_freqs.weight', shape: [factors.length], type: GgmlType.F32, data: f32Bytes(factors) });
  }
  for (const n of ggufTensorNames(spec)) {
    let t = weights.get(n.hf)!;
    if (n.ropeHeads !== undefined) t = rotateHalfToInterleaved(t, n.ropeHeads);
    tensors.push({ name: n.gguf, shape: [...t.shape], ...encodeTensor(n.gguf, t, dtype) });
  }
  return { metadata: md, tensors };
}

/** Write a model as a GGUF v3 file for llama.cpp (Q/K permuted back to interleaved RoPE). */
export async function writeGguf(model: { spec: ModelSpec; weights: Weights }, path: string, options: WriteGgufOptions): Promise<void> {
  const name = options.name ?? basename(path).replace(/\.gguf$/i, '');
  await writeGgufFile(path, buildGgufContents(model, { ...options, name }));
}
