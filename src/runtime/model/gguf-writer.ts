/**
 * Writing a model as a GGUF v3 file llama.cpp loads (architecture `llama`): F32, F16, Q8_0 or Q4_0
 * matrices; the quantized ones hold exactly the blocks our int8 / int4 graphs run (ggml-blocks.ts),
 * and Q/K rows go back to the interleaved RoPE layout GGUF keeps (gguf-llama.ts).
 */
import { promises as fs } from 'node:fs';
import { basename } from 'node:path';
import { checkModel, f32Bytes, writeAll } from './checkpoint-io.ts';
import { GGML_BLOCK, quantizeQ4_0, quantizeQ8_0 } from './ggml-blocks.ts';
import { DEFAULT_ALIGNMENT, GGUF_MAGIC, GgmlType, type GgufKv, GgufType, type GgufValue } from './gguf-container.ts';
import { ggufTensorNames, llama3RopeFactors } from './gguf-llama.ts';
import { encodeF16 } from './half.ts';
import { rotateHalfToInterleaved } from './rope-layout.ts';
import { ModelFormatError, type ModelSpec } from './spec.ts';
import type { Tensor, Weights } from './tensor.ts';
import type { ByteBpeSource, ScoredVocabSource } from '../tokenizer/types.ts';

/** A tensor ready to write: row-major shape, ggml type and its encoded bytes. */
export interface GgufTensorData {
  name: string;
  shape: number[];
  type: number;
  data: Uint8Array;
}

/** Everything a GGUF file holds; writeGgufFile lays it out. */
export interface GgufContents {
  metadata: Map<string, GgufKv>;
  tensors: GgufTensorData[];
}

/** Growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void { this.reserve(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number): void { this.reserve(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number): void { this.reserve(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number): void { this.reserve(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number): void { this.reserve(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number): void { this.reserve(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number): void { this.reserve(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number): void { this.reserve(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: number | bigint): void { this.reserve(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  i64(v: number | bigint): void { this.reserve(8); this.view.setBigInt64(this.length, BigInt(v), true); this.length += 8; }
  bytes(b: Uint8Array): void { this.reserve(b.length); this.buf.set(b, this.length); this.length += b.length; }
  str(s: string): void { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.bytes(b); }
  pad(alignment: number): void { while (this.length % alignment !== 0) this.u8(0); }
  result(): Uint8Array { return this.buf.subarray(0, this.length); }
}

function writeValue(s: ByteSink, type: number, v: GgufValue, itemType: number | undefined, key: string): void {
  const num = (): number => {
    if (typeof v !== 'number') throw new Error(`GGUF writer: ${key} needs a number`);
    return v;
  };
  switch (type) {
    case GgufType.UINT8: return s.u8(num());
    case GgufType.INT8: return s.i8(num());
    case GgufType.UINT16: return s.u16(num());
    case GgufType.INT16: return s.i16(num());
    case GgufType.UINT32: return s.u32(num());
    case GgufType.INT32: return s.i32(num());
    case GgufType.FLOAT32: return s.f32(num());
    case GgufType.FLOAT64: return s.f64(num());
    case GgufType.BOOL: return s.u8(v ? 1 : 0);
    case GgufType.STRING: return s.str(String(v));
    case GgufType.UINT64: return s.u64(v as number | bigint);
    case GgufType.INT64: return s.i64(v as number | bigint);
    case GgufType.ARRAY: {
      if (!Array.isArray(v) || itemType === undefined || itemType === GgufType.ARRAY) {
        throw new Error(`GGUF writer: ${key} needs an array and a scalar item type`);
      }
      s.u32(itemType);
      s.u64(v.length);
      for (const x of v) writeValue(s, itemType, x, undefined, key);
      return;
    }
    default:
      throw new Error(`GGUF writer: ${key} has unknown type ${type}`);
  }
}

/** Lay out and write a GGUF v3 file: header, metadata, tensor infos, aligned tensor data. */
export async function writeGgufFile(path: string, contents: GgufContents): Promise<void> {
  const alignKv = contents.metadata.get('general.alignment');
  const alignment = alignKv ? Number(alignKv.value) : DEFAULT_ALIGNMENT;
  const s = new ByteSink();
  s.u32(GGUF_MAGIC);
  s.u32(3);
  s.u64(contents.tensors.length);
  s.u64(contents.metadata.size);
  for (const [key, kv] of contents.metadata) {
    s.str(key);
    s.u32(kv.type);
    writeValue(s, kv.type, kv.value, kv.itemType, key);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of contents.tensors) {
    s.str(t.name);
    s.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) s.u64(d);
    s.u32(t.type);
    s.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(t.data.length / alignment) * alignment;
  }
  s.pad(alignment);
  const fh = await fs.open(path, 'w');
  try {
    await writeAll(fh, s.result());
    for (const t of contents.tensors) {
      await writeAll(fh, t.data);
      const pad = (alignment - (t.data.length % alignment)) % alignment;
      if (pad) await writeAll(fh, new Uint8Array(pad));
    }
  } finally {
    await fh.close();
  }
}

export type GgufWriteDtype = 'f32' | 'f16' | 'q8_0' | 'q4_0';

/** llama_ftype of a file written as `dtype` (ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_Q4_0). */
const fileType: Record<GgufWriteDtype, number> = { f32: 0, f16: 1, q8_0: 7, q4_0: 2 };

/** One matrix (or vector) encoded for the file in `dtype`. */
function encodeTensor(t: Tensor, dtype: GgufWriteDtype): { type: number; data: Uint8Array } {
  const matrix = t.shape.length === 2;
  const wholeBlocks = matrix && t.shape[1]! % GGML_BLOCK === 0;
  if (matrix && dtype === 'f16') return { type: GgmlType.F16, data: encodeF16(t.data) };
  if (wholeBlocks && dtype === 'q8_0') return { type: GgmlType.Q8_0, data: quantizeQ8_0(t.data) };
  if (wholeBlocks && dtype === 'q4_0') return { type: GgmlType.Q4_0, data: quantizeQ4_0(t.data) };
  return { type: GgmlType.F32, data: f32Bytes(t.data) };
}

export interface WriteGgufOptions {
  /**
   * Storage for matrices (norm vectors stay F32, as llama.cpp's converter does). Default 'f32'.
   * q8_0 / q4_0: blocks of 32 along each row; a matrix whose rows are not whole blocks stays F32
   * (as llama.cpp's quantizer falls back for such tensors).
   */
  dtype?: GgufWriteDtype;
  tokenizer: ScoredVocabSource | ByteBpeSource;
  /** general.name (default: the file name without extension). */
  name?: string;
  chatTemplate?: string;
}

const u32 = (value: number): GgufKv => ({ type: GgufType.UINT32, value });
const f32 = (value: number): GgufKv => ({ type: GgufType.FLOAT32, value });
const str = (value: string): GgufKv => ({ type: GgufType.STRING, value });
const bool = (value: boolean): GgufKv => ({ type: GgufType.BOOL, value });
const arr = (itemType: number, value: GgufValue[]): GgufKv => ({ type: GgufType.ARRAY, itemType, value });

/**
 * The metadata and tensors writeGguf would write, for callers that adjust them (e.g. tests that
 * quantize one tensor). Only models whose layers all have the same shape are supported: llama.cpp's
 * `llama` architecture sizes every layer's tensors from layer 0's hyperparameters.
 */
export function buildGgufContents(model: { spec: ModelSpec; weights: Weights }, options: WriteGgufOptions & { name: string }): GgufContents {
  const { spec, weights } = model;
  checkModel(spec, weights, 'GGUF writer input');
  const l0 = spec.layers[0]!;
  const uniform = spec.layers.every((l) => l.heads === l0.heads && l.kvHeads === l0.kvHeads && l.headDim === l0.headDim && l.ffn === l0.ffn);
  if (!uniform || l0.heads === 0 || l0.ffn === 0) {
    throw new ModelFormatError(
      `GGUF export needs every layer to have the same shape with attention and MLP present (llama.cpp's llama architecture sizes all layers from layer 0); ` +
        `this model's layers differ (${spec.layers.map((l) => `${l.heads}h/${l.kvHeads}kv/${l.ffn}ffn`).join(', ')}). Export it as a Hugging Face directory instead.`,
    );
  }
  const tok = options.tokenizer;
  if (tok.pieces.length !== spec.vocabSize) {
    throw new ModelFormatError(`GGUF writer: tokenizer ${tok.origin} has ${tok.pieces.length} tokens but the model has vocab_size ${spec.vocabSize}`);
  }
  const dtype = options.dtype ?? 'f32';
  const a = 'llama';
  const md = new Map<string, GgufKv>();
  md.set('general.architecture', str(a));
  md.set('general.name', str(options.name));
  md.set('general.file_type', u32(fileType[dtype]));
  md.set('general.alignment', u32(DEFAULT_ALIGNMENT));
  md.set(`${a}.vocab_size`, u32(spec.vocabSize));
  md.set(`${a}.context_length`, u32(spec.maxContext));
  md.set(`${a}.embedding_length`, u32(spec.hidden));
  md.set(`${a}.block_count`, u32(spec.layers.length));
  md.set(`${a}.feed_forward_length`, u32(l0.ffn));
  md.set(`${a}.attention.head_count`, u32(l0.heads));
  md.set(`${a}.attention.head_count_kv`, u32(l0.kvHeads));
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

  md.set('tokenizer.ggml.model', str(tok.kind === 'scored-vocab' ? 'llama' : 'gpt2'));
  if (tok.kind === 'byte-bpe') md.set('tokenizer.ggml.pre', str(tok.preTokenizer ?? 'default'));
  md.set('tokenizer.ggml.tokens', arr(GgufType.STRING, tok.pieces));
  if (tok.kind === 'scored-vocab') md.set('tokenizer.ggml.scores', arr(GgufType.FLOAT32, tok.scores));
  md.set('tokenizer.ggml.token_type', arr(GgufType.INT32, tok.types));
  if (tok.kind === 'byte-bpe') md.set('tokenizer.ggml.merges', arr(GgufType.STRING, tok.merges));
  md.set('tokenizer.ggml.bos_token_id', u32(spec.bosTokenId));
  md.set('tokenizer.ggml.eos_token_id', u32(spec.eosTokenIds[0]!)); // GGUF has one EOS key; llama.cpp finds other end tokens by their text
  if (tok.kind === 'scored-vocab' && tok.unkTokenId !== undefined) md.set('tokenizer.ggml.unknown_token_id', u32(tok.unkTokenId));
  if (tok.kind === 'scored-vocab') md.set('tokenizer.ggml.add_space_prefix', bool(tok.addDummyPrefix));
  md.set('tokenizer.ggml.add_bos_token', bool(true));
  md.set('tokenizer.ggml.add_eos_token', bool(false));
  if (options.chatTemplate !== undefined) md.set('tokenizer.chat_template', str(options.chatTemplate));

  const tensors: GgufTensorData[] = [];
  if (scaling?.type === 'llama3') {
    const factors = llama3RopeFactors(spec.rope.theta, l0.headDim, scaling);
    tensors.push({ name: 'rope_freqs.weight', shape: [factors.length], type: GgmlType.F32, data: f32Bytes(factors) });
  }
  for (const n of ggufTensorNames(spec)) {
    let t = weights.get(n.hf)!;
    if (n.ropeHeads !== undefined) t = rotateHalfToInterleaved(t, n.ropeHeads);
    tensors.push({ name: n.gguf, shape: [...t.shape], ...encodeTensor(t, dtype) });
  }
  return { metadata: md, tensors };
}

/** Write a model as a GGUF v3 file for llama.cpp (Q/K permuted back to interleaved RoPE). */
export async function writeGguf(model: { spec: ModelSpec; weights: Weights }, path: string, options: WriteGgufOptions): Promise<void> {
  const name = options.name ?? basename(path).replace(/\.gguf$/i, '');
  await writeGgufFile(path, buildGgufContents(model, { ...options, name }));
}
