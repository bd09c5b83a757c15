/**
 * GGUF (llama.cpp's checkpoint format), versions 2 and 3, little-endian.
 *
 * Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count, metadata key/values, tensor
 * infos (name, n_dims, ne[] innermost first, type, offset), padding to `general.alignment`
 * (default 32), then tensor data at the aligned offsets. GGUF's ne[] is the row-major shape
 * reversed: a [rows, cols] matrix is stored with ne = [cols, rows].
 *
 * We read architecture `llama` with tensor types F32, F16, BF16, Q8_0 and Q4_0 (dequantized to
 * float32 for float engines), and write F32 / F16 / Q8_0 / Q4_0 files llama.cpp can load; the
 * quantized ones hold exactly the blocks our int8 / int4 graphs run (block-quantization.ts).
 * GGUF keeps Q/K rows in the interleaved RoPE layout (llama.cpp's converter permutes Hugging Face
 * weights), so both directions convert.
 */
import { basename } from 'node:path';
import { promises as fs } from 'node:fs';
import type { LoadedModel } from './loaded-model.ts';
import { ModelFormatError, expectedWeightShapes, weightName } from './spec.ts';
import type { LayerSpec, ModelSpec, RopeScaling } from './spec.ts';
import { numel, sameShape } from './tensor.ts';
import type { Tensor, Weights } from './tensor.ts';
import { ByteReader, checkModel, copyF32, f32Bytes, formatShape, readCheckpointFile, requireBytes, writeAll } from './checkpoint-io.ts';
import { decodeBf16, decodeF16, encodeF16, f16ToNumber, numberToF16 } from './half.ts';
import { interleavedToRotateHalf, ropeRowOrder, rotateHalfToInterleaved } from './rope-layout.ts';
import { readLlama2cTokenizer } from './llama2c.ts';
import { type BlockQuantizedMatrix, type FileBlocks, permuteBlockRows, quantizeMatrix } from './block-quantization.ts';
import { TokenType } from '../tokenizer/types.ts';
import type { ByteBpeSource, ScoredVocabSource, TokenizerSource } from '../tokenizer/types.ts';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types. */
export const GgufType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** ggml tensor types we read (others are named in errors via GGML_TYPE_NAMES). */
export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 } as const;

const GGML_TYPE_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K',
  12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S',
  20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64',
  29: 'IQ1_M', 30: 'BF16', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

export function ggmlTypeName(type: number): string {
  return GGML_TYPE_NAMES[type] ?? `type ${type}`;
}

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufValue[];
/** One metadata value with its GGUF type (`itemType` for arrays). */
export interface GgufKv {
  type: number;
  value: GgufValue;
  itemType?: number;
}

export interface GgufTensorInfo {
  name: string;
  /** Row-major shape (GGUF's ne[] reversed). */
  shape: number[];
  type: number;
  /** Absolute byte offset of the data in the file. */
  offset: number;
}

export interface GgufFile {
  file: string;
  version: number;
  metadata: Map<string, GgufKv>;
  tensors: Map<string, GgufTensorInfo>;
  alignment: number;
  /** Absolute offset of the tensor data section. */
  dataOffset: number;
  bytes: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Parsing

function readValue(r: ByteReader, type: number, key: string, depth = 0): GgufValue {
  switch (type) {
    case GgufType.UINT8: return r.u8();
    case GgufType.INT8: return r.i8();
    case GgufType.UINT16: return r.u16();
    case GgufType.INT16: return r.i16();
    case GgufType.UINT32: return r.u32();
    case GgufType.INT32: return r.i32();
    case GgufType.FLOAT32: return r.f32();
    case GgufType.FLOAT64: return r.f64();
    case GgufType.BOOL: return r.u8() !== 0;
    case GgufType.STRING: return r.utf8(r.u64size(), `string in ${key}`);
    case GgufType.UINT64:
    case GgufType.INT64: {
      const v = type === GgufType.UINT64 ? r.u64big() : r.i64big();
      return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
    }
    case GgufType.ARRAY: {
      if (depth >= 4) throw new ModelFormatError(`${r.file}: metadata ${key} nests arrays more than 4 deep`);
      const itemType = r.u32();
      const n = r.u64size();
      const out: GgufValue[] = [];
      for (let i = 0; i < n; i++) out.push(readValue(r, itemType, key, depth + 1));
      return out;
    }
    default:
      throw new ModelFormatError(`${r.file}: metadata ${key} has unknown value type ${type}`);
  }
}

/** Parse the header, metadata and tensor infos of a GGUF file in memory. */
export function parseGguf(bytes: Uint8Array, file: string): GgufFile {
  const r = new ByteReader(bytes, file);
  requireBytes(file, bytes.length, 4);
  const magic = r.u32();
  if (magic !== GGUF_MAGIC) {
    const shown = Array.from(bytes.subarray(0, 4), (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
    throw new ModelFormatError(`${file}: not a GGUF file (magic "${shown}", expected "GGUF")`);
  }
  const version = r.u32();
  if (version !== 2 && version !== 3) {
    throw new ModelFormatError(
      `${file}: unsupported GGUF version ${version} (supported: 2, 3${version === 1 ? '; re-convert this old file with a current llama.cpp' : version > 0xffff ? '; big-endian GGUF is not supported' : ''})`,
    );
  }
  const nTensors = r.u64size();
  const nKv = r.u64size();
  const metadata = new Map<string, GgufKv>();
  for (let i = 0; i < nKv; i++) {
    const key = r.utf8(r.u64size(), 'metadata key');
    const type = r.u32();
    if (type === GgufType.ARRAY) {
      const save = r.pos;
      const itemType = r.u32();
      r.pos = save;
      metadata.set(key, { type, itemType, value: readValue(r, type, key) });
    } else {
      metadata.set(key, { type, value: readValue(r, type, key) });
    }
  }
  const tensors = new Map<string, GgufTensorInfo>();
  const infos: { name: string; shape: number[]; type: number; rel: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = r.utf8(r.u64size(), 'tensor name');
    const nDims = r.u32();
    if (nDims < 1 || nDims > 4) throw new ModelFormatError(`${file}: tensor ${name} has ${nDims} dimensions (GGUF allows 1 to 4)`);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(r.u64size());
    const type = r.u32();
    const rel = r.u64size();
    infos.push({ name, shape: ne.reverse(), type, rel });
  }
  const alignKv = metadata.get('general.alignment');
  const alignment = alignKv === undefined ? DEFAULT_ALIGNMENT : Number(alignKv.value);
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new ModelFormatError(`${file}: general.alignment ${String(alignKv?.value)} is not a power of two`);
  }
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  for (const t of infos) {
    if (t.rel % alignment !== 0) throw new ModelFormatError(`${file}: tensor ${t.name} offset ${t.rel} is not aligned to ${alignment}`);
    tensors.set(t.name, { name: t.name, shape: t.shape, type: t.type, offset: dataOffset + t.rel });
  }
  return { file, version, metadata, tensors, alignment, dataOffset, bytes };
}

/** Bytes a tensor of a supported type occupies; a clear error for unsupported types. */
function tensorByteSize(g: GgufFile, t: GgufTensorInfo): number {
  const n = numel(t.shape);
  switch (t.type) {
    case GgmlType.F32: return 4 * n;
    case GgmlType.F16:
    case GgmlType.BF16: return 2 * n;
    case GgmlType.Q8_0:
    case GgmlType.Q4_0: {
      const inner = t.shape[t.shape.length - 1]!;
      const name = ggmlTypeName(t.type);
      if (inner % Q8_0_BLOCK !== 0) throw new ModelFormatError(`${g.file}: ${name} tensor ${t.name} has rows of ${inner}, not a multiple of ${Q8_0_BLOCK}`);
      return (n / Q8_0_BLOCK) * (t.type === GgmlType.Q8_0 ? Q8_0_BLOCK_BYTES : Q4_0_BLOCK_BYTES);
    }
    default:
      throw new ModelFormatError(
        `${g.file}: tensor ${t.name} has unsupported type ${ggmlTypeName(t.type)} (supported: F32, F16, BF16, Q8_0, Q4_0); re-quantize the model to one of these`,
      );
  }
}

/** Decode one tensor to float32 (F32 bit-exact; others widened/dequantized). */
export function readGgufTensor(g: GgufFile, name: string): Tensor {
  const t = g.tensors.get(name);
  if (!t) throw new ModelFormatError(`${g.file}: no tensor ${name}`);
  const size = tensorByteSize(g, t);
  requireBytes(g.file, g.bytes.length, t.offset + size);
  const n = numel(t.shape);
  const data =
    t.type === GgmlType.F32
      ? copyF32(g.bytes, t.offset, n)
      : t.type === GgmlType.F16
        ? decodeF16(g.bytes, t.offset, n)
        : t.type === GgmlType.BF16
          ? decodeBf16(g.bytes, t.offset, n)
          : t.type === GgmlType.Q8_0
            ? dequantizeQ8_0(g.bytes.subarray(t.offset, t.offset + size), n)
            : dequantizeQ4_0(g.bytes.subarray(t.offset, t.offset + size), n);
  return { shape: [...t.shape], data };
}

/**
 * A Q8_0 or Q4_0 matrix's blocks as MatMulNBits reads them, straight from the file's bytes (no
 * float on the way): Q8_0's int8 q becomes the code q + 128, Q4_0's nibbles (value j low, value
 * j + 16 high in byte j) are repacked two neighbours to a byte; the f16 scales are kept. Undefined
 * for other types and for anything but a matrix.
 */
export function ggufBlocks(g: GgufFile, name: string): BlockQuantizedMatrix | undefined {
  const t = g.tensors.get(name);
  if (!t || t.shape.length !== 2 || (t.type !== GgmlType.Q8_0 && t.type !== GgmlType.Q4_0)) return undefined;
  const [n, k] = t.shape as [number, number];
  const size = tensorByteSize(g, t);
  requireBytes(g.file, g.bytes.length, t.offset + size);
  const bytes = g.bytes.subarray(t.offset, t.offset + size);
  const blocks = (n * k) / Q8_0_BLOCK;
  const scales = new Float32Array(blocks);
  if (t.type === GgmlType.Q8_0) {
    const codes = new Uint8Array(n * k);
    for (let b = 0, p = 0; b < blocks; b++, p += Q8_0_BLOCK_BYTES) {
      scales[b] = f16ToNumber(bytes[p]! | (bytes[p + 1]! << 8));
      for (let j = 0; j < Q8_0_BLOCK; j++) codes[b * Q8_0_BLOCK + j] = bytes[p + 2 + j]! ^ 0x80;
    }
    return { bits: 8, blockSize: Q8_0_BLOCK, n, k, codes, scales };
  }
  const codes = new Uint8Array((n * k) / 2);
  const nibble = (p: number, j: number) => (j < 16 ? bytes[p + 2 + j]! & 15 : bytes[p + 2 + j - 16]! >> 4);
  for (let b = 0, p = 0; b < blocks; b++, p += Q4_0_BLOCK_BYTES) {
    scales[b] = f16ToNumber(bytes[p]! | (bytes[p + 1]! << 8));
    for (let j = 0; j < Q8_0_BLOCK; j += 2) codes[b * 16 + (j >> 1)] = nibble(p, j) | (nibble(p, j + 1) << 4);
  }
  return { bits: 4, blockSize: Q8_0_BLOCK, n, k, codes, scales };
}

// ---------------------------------------------------------------------------------------------
// Q8_0: blocks of 32 values, each an f16 scale d followed by 32 int8 q; value = d * q.

const Q8_0_BLOCK = 32;
const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

export function dequantizeQ8_0(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let b = 0, p = 0; b * Q8_0_BLOCK < count; b++, p += Q8_0_BLOCK_BYTES) {
    const d = f16ToNumber(bytes[p]! | (bytes[p + 1]! << 8));
    for (let j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = d * ((bytes[p + 2 + j]! << 24) >> 24);
  }
  return out;
}

/** Quantize as ggml's reference quantize_row_q8_0 does (d = amax/127, q = round(x/d)). */
export function quantizeQ8_0(data: Float32Array): Uint8Array {
  if (data.length % Q8_0_BLOCK !== 0) throw new Error(`Q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${data.length}`);
  const blocks = data.length / Q8_0_BLOCK;
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(data[b * Q8_0_BLOCK + j]!));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const h = numberToF16(d);
    const p = b * Q8_0_BLOCK_BYTES;
    out[p] = h & 0xff;
    out[p + 1] = h >>> 8;
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const x = Math.fround(data[b * Q8_0_BLOCK + j]! * id);
      out[p + 2 + j] = (Math.sign(x) * Math.round(Math.abs(x))) & 0xff; // roundf: half away from zero
    }
  }
  return out;
}

// Q4_0: blocks of 32 values, an f16 scale d and 16 bytes; byte j holds value j (low nibble) and
// value j + 16 (high nibble); value = d * (nibble − 8).

const Q4_0_BLOCK_BYTES = 2 + Q8_0_BLOCK / 2;

export function dequantizeQ4_0(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let b = 0, p = 0; b * Q8_0_BLOCK < count; b++, p += Q4_0_BLOCK_BYTES) {
    const d = f16ToNumber(bytes[p]! | (bytes[p + 1]! << 8));
    for (let j = 0; j < 16; j++) {
      const q = bytes[p + 2 + j]!;
      out[b * Q8_0_BLOCK + j] = d * ((q & 15) - 8);
      out[b * Q8_0_BLOCK + j + 16] = d * ((q >> 4) - 8);
    }
  }
  return out;
}

/**
 * Quantize as ggml's reference quantize_row_q4_0 does, through the same code our int4 graphs use
 * (block-quantization.ts packs values 2i, 2i+1 per byte; Q4_0 packs j, j+16: only the order differs).
 */
export function quantizeQ4_0(data: Float32Array): Uint8Array {
  if (data.length % Q8_0_BLOCK !== 0) throw new Error(`Q4_0 needs a multiple of ${Q8_0_BLOCK} values, got ${data.length}`);
  const blocks = data.length / Q8_0_BLOCK;
  const q = quantizeMatrix(data, blocks, Q8_0_BLOCK, 4, Q8_0_BLOCK);
  const out = new Uint8Array(blocks * Q4_0_BLOCK_BYTES);
  for (let b = 0; b < blocks; b++) {
    const p = b * Q4_0_BLOCK_BYTES;
    const h = numberToF16(q.scales[b]!);
    out[p] = h & 0xff;
    out[p + 1] = h >>> 8;
    const code = (i: number) => (q.codes[b * 16 + (i >> 1)]! >> ((i & 1) * 4)) & 15;
    for (let j = 0; j < 16; j++) out[p + 2 + j] = code(j) | (code(j + 16) << 4);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Metadata access with typed errors

/** The shortest decimal that rounds to this float32 (GGUF stores 1e-5 as 9.99999974e-6). */
function shortestF32(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const c = Number(x.toPrecision(p));
    if (Math.fround(c) === x) return c;
  }
  return x;
}

class Meta {
  constructor(
    private readonly g: GgufFile,
    private readonly prefix: string,
  ) {}
  private kv(key: string): GgufKv | undefined {
    return this.g.metadata.get(key.startsWith('.') ? this.prefix + key : key);
  }
  private full(key: string): string {
    return key.startsWith('.') ? this.prefix + key : key;
  }
  private bad(key: string, want: string): ModelFormatError {
    return new ModelFormatError(`${this.g.file}: metadata ${this.full(key)} should be ${want}, got ${JSON.stringify(this.kv(key)?.value, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
  }
  private toNum(v: GgufValue, type: number, key: string): number {
    if (typeof v === 'number') return type === GgufType.FLOAT32 ? shortestF32(v) : v;
    throw this.bad(key, 'a number');
  }
  num(key: string): number | undefined {
    const kv = this.kv(key);
    return kv === undefined ? undefined : this.toNum(kv.value, kv.type, key);
  }
  reqNum(key: string): number {
    const v = this.num(key);
    if (v === undefined) throw new ModelFormatError(`${this.g.file}: missing metadata ${this.full(key)}`);
    return v;
  }
  /** A number, or a per-layer array of numbers. */
  numOrArr(key: string): number | number[] | undefined {
    const kv = this.kv(key);
    if (kv === undefined) return undefined;
    if (Array.isArray(kv.value)) return kv.value.map((v) => this.toNum(v, kv.itemType ?? -1, key));
    return this.toNum(kv.value, kv.type, key);
  }
  numArr(key: string): number[] | undefined {
    const v = this.numOrArr(key);
    if (v !== undefined && !Array.isArray(v)) throw this.bad(key, 'an array');
    return v;
  }
  rawNumArr(key: string): number[] | undefined {
    const kv = this.kv(key);
    if (kv === undefined) return undefined;
    if (!Array.isArray(kv.value) || !kv.value.every((v) => typeof v === 'number')) throw this.bad(key, 'an array of numbers');
    return kv.value as number[];
  }
  str(key: string): string | undefined {
    const kv = this.kv(key);
    if (kv === undefined) return undefined;
    if (typeof kv.value !== 'string') throw this.bad(key, 'a string');
    return kv.value;
  }
  strArr(key: string): string[] | undefined {
    const kv = this.kv(key);
    if (kv === undefined) return undefined;
    if (!Array.isArray(kv.value) || !kv.value.every((v) => typeof v === 'string')) throw this.bad(key, 'an array of strings');
    return kv.value as string[];
  }
  bool(key: string): boolean | undefined {
    const kv = this.kv(key);
    if (kv === undefined) return undefined;
    if (typeof kv.value !== 'boolean') throw this.bad(key, 'a boolean');
    return kv.value;
  }
}

// ---------------------------------------------------------------------------------------------
// GGUF <-> our names

interface NamePair {
  gguf: string;
  hf: string;
  /** Heads to (un)permute for RoPE layout (attn_q: query heads, attn_k: KV heads). */
  ropeHeads?: number;
}

/** The GGUF tensor for every weight the spec expects, in llama.cpp's conventional order. */
function tensorNames(spec: ModelSpec): NamePair[] {
  const out: NamePair[] = [
    { gguf: 'token_embd.weight', hf: weightName.embed },
    { gguf: 'output_norm.weight', hf: weightName.finalNorm },
  ];
  if (!spec.tiedEmbeddings) out.push({ gguf: 'output.weight', hf: weightName.lmHead });
  spec.layers.forEach((l, i) => {
    const b = `blk.${i}`;
    if (l.heads > 0) {
      out.push(
        { gguf: `${b}.attn_norm.weight`, hf: weightName.attnNorm(i) },
        { gguf: `${b}.attn_q.weight`, hf: weightName.q(i), ropeHeads: l.heads },
        { gguf: `${b}.attn_k.weight`, hf: weightName.k(i), ropeHeads: l.kvHeads },
        { gguf: `${b}.attn_v.weight`, hf: weightName.v(i) },
        { gguf: `${b}.attn_output.weight`, hf: weightName.o(i) },
      );
    }
    if (l.ffn > 0) {
      out.push(
        { gguf: `${b}.ffn_norm.weight`, hf: weightName.mlpNorm(i) },
        { gguf: `${b}.ffn_gate.weight`, hf: weightName.gate(i) },
        { gguf: `${b}.ffn_up.weight`, hf: weightName.up(i) },
        { gguf: `${b}.ffn_down.weight`, hf: weightName.down(i) },
      );
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// llama3 RoPE scaling: llama.cpp stores it as per-frequency divisors in `rope_freqs.weight`.

const LLAMA3_DEFAULTS = { lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };

/** The divisors llama.cpp's convert_hf_to_gguf.py writes to rope_freqs.weight for llama3 scaling. */
export function llama3RopeFactors(theta: number, headDim: number, s: Extract<RopeScaling, { type: 'llama3' }>): Float32Array {
  const out = new Float32Array(headDim / 2);
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < headDim / 2; i++) {
    const freq = Math.fround(1 / Math.fround(theta ** ((2 * i) / headDim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

function llama3FromFactors(factors: Float32Array, theta: number, headDim: number, originalCtx: number | undefined, file: string): RopeScaling {
  const factor = shortestF32(factors.reduce((a, b) => Math.max(a, b), 1));
  const s = { type: 'llama3' as const, factor, ...LLAMA3_DEFAULTS, ...(originalCtx ? { originalMaxPositionEmbeddings: originalCtx } : {}) };
  const expect = llama3RopeFactors(theta, headDim, s);
  const ok = factors.length === expect.length && factors.every((f, i) => Math.abs(f - expect[i]!) <= 1e-4 * Math.abs(expect[i]!));
  if (!ok) {
    throw new ModelFormatError(
      `${file}: rope_freqs.weight does not match llama3 RoPE scaling (factor ${factor}, low_freq_factor 1, high_freq_factor 4, original context ${s.originalMaxPositionEmbeddings}); other RoPE frequency tables are not supported`,
    );
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Reading a model

function perLayer(v: number | number[], n: number, key: string, file: string): number[] {
  if (!Array.isArray(v)) return Array.from({ length: n }, () => v);
  if (v.length !== n) throw new ModelFormatError(`${file}: ${key} has ${v.length} entries for ${n} layers`);
  return v;
}

function specFromGguf(g: GgufFile): ModelSpec {
  const arch = new Meta(g, '').str('general.architecture');
  if (arch !== 'llama') {
    throw new ModelFormatError(`${g.file}: unsupported architecture '${arch ?? '(missing general.architecture)'}' (only 'llama' is supported)`);
  }
  const m = new Meta(g, arch);
  const file = g.file;
  const hidden = m.reqNum('.embedding_length');
  const nLayers = m.reqNum('.block_count');
  const heads = perLayer(m.numOrArr('.attention.head_count') ?? missing(file, `${arch}.attention.head_count`), nLayers, `${arch}.attention.head_count`, file);
  const kvHeads = perLayer(m.numOrArr('.attention.head_count_kv') ?? heads, nLayers, `${arch}.attention.head_count_kv`, file);
  const firstHeads = heads.find((h) => h > 0);
  const headDim = m.num('.attention.key_length') ?? (firstHeads ? hidden / firstHeads : 0);
  if (!Number.isInteger(headDim)) throw new ModelFormatError(`${file}: embedding_length ${hidden} is not divisible by head_count ${firstHeads}`);
  const valueLength = m.num('.attention.value_length');
  if (valueLength !== undefined && valueLength !== headDim) {
    throw new ModelFormatError(`${file}: attention.value_length ${valueLength} differs from key_length ${headDim}; not supported`);
  }
  const ropeDim = m.num('.rope.dimension_count');
  if (ropeDim !== undefined && ropeDim !== headDim) {
    throw new ModelFormatError(`${file}: rope.dimension_count ${ropeDim} differs from the head size ${headDim}; partial RoPE is not supported`);
  }
  // Feed-forward width: the metadata when present (scalar or per-layer), else the gate tensor's rows.
  const ffnMeta = m.numOrArr('.feed_forward_length');
  const ffn =
    ffnMeta !== undefined
      ? perLayer(ffnMeta, nLayers, `${arch}.feed_forward_length`, file)
      : Array.from({ length: nLayers }, (_, i) => g.tensors.get(`blk.${i}.ffn_gate.weight`)?.shape[0] ?? 0);
  const layers: LayerSpec[] = heads.map((h, i) => ({ heads: h, kvHeads: h === 0 ? 0 : kvHeads[i]!, headDim, ffn: ffn[i]! }));

  const embd = g.tensors.get('token_embd.weight');
  if (!embd) throw new ModelFormatError(`${file}: missing tensor token_embd.weight`);
  const vocabSize = embd.shape[0]!;
  const metaVocab = m.num('.vocab_size');
  if (metaVocab !== undefined && metaVocab !== vocabSize) {
    throw new ModelFormatError(`${file}: ${arch}.vocab_size ${metaVocab} but token_embd.weight has ${vocabSize} rows`);
  }

  const theta = m.num('.rope.freq_base') ?? 10000;
  let scaling: RopeScaling | undefined;
  const scalingType = m.str('.rope.scaling.type') ?? (m.num('.rope.scale_linear') !== undefined ? 'linear' : undefined);
  if (scalingType === 'linear') {
    const factor = m.num('.rope.scaling.factor') ?? m.num('.rope.scale_linear') ?? 1;
    if (factor !== 1) scaling = { type: 'linear', factor };
  } else if (scalingType !== undefined && scalingType !== 'none') {
    throw new ModelFormatError(`${file}: RoPE scaling type '${scalingType}' is not supported (supported: none, linear, llama3)`);
  }
  if (g.tensors.has('rope_freqs.weight')) {
    if (scaling) throw new ModelFormatError(`${file}: both linear RoPE scaling and rope_freqs.weight; not supported`);
    scaling = llama3FromFactors(readGgufTensor(g, 'rope_freqs.weight').data, theta, headDim, m.num('.rope.scaling.original_context_length'), file);
  }

  const tk = new Meta(g, 'tokenizer.ggml');
  const isSpm = tk.str('.model') !== 'gpt2';
  const bos = tk.num('.bos_token_id') ?? (isSpm ? 1 : missing(file, 'tokenizer.ggml.bos_token_id'));
  const eos = tk.num('.eos_token_id') ?? (isSpm ? 2 : missing(file, 'tokenizer.ggml.eos_token_id'));
  const eosTokenIds = [...new Set([eos, tk.num('.eot_token_id'), tk.num('.eom_token_id')].filter((x): x is number => x !== undefined))];

  return {
    architecture: 'llama',
    vocabSize,
    hidden,
    layers,
    normEps: m.reqNum('.attention.layer_norm_rms_epsilon'),
    rope: scaling ? { theta, scaling } : { theta },
    tiedEmbeddings: !g.tensors.has('output.weight') || sameBytes(g, 'output.weight', 'token_embd.weight'),
    bosTokenId: bos,
    eosTokenIds,
    maxContext: m.reqNum('.context_length'),
  };
}

/**
 * Whether two tensors are stored byte-identically. An output.weight that is an exact copy of
 * token_embd.weight (as in llama.cpp's conversion of stories260K) is read as tied embeddings, the
 * same test llama2.c's exporter applies; the model computes the same either way.
 */
function sameBytes(g: GgufFile, a: string, b: string): boolean {
  const ta = g.tensors.get(a);
  const tb = g.tensors.get(b);
  if (!ta || !tb || ta.type !== tb.type || !sameShape(ta.shape, tb.shape)) return false;
  const size = tensorByteSize(g, ta);
  if (ta.offset + size > g.bytes.length || tb.offset + size > g.bytes.length) return false; // reported as truncation later
  return Buffer.from(g.bytes.buffer, g.bytes.byteOffset + ta.offset, size).equals(Buffer.from(g.bytes.buffer, g.bytes.byteOffset + tb.offset, size));
}

function missing(file: string, key: string): never {
  throw new ModelFormatError(`${file}: missing metadata ${key}`);
}

function tokenizerFromGguf(g: GgufFile, spec: ModelSpec): TokenizerSource | undefined {
  const tk = new Meta(g, 'tokenizer.ggml');
  const model = tk.str('.model');
  if (model === undefined) return undefined;
  const pieces = tk.strArr('.tokens') ?? missing(g.file, 'tokenizer.ggml.tokens');
  if (pieces.length !== spec.vocabSize) {
    throw new ModelFormatError(`${g.file}: tokenizer.ggml.tokens has ${pieces.length} tokens but token_embd.weight has ${spec.vocabSize} rows`);
  }
  const types = tk.rawNumArr('.token_type') ?? pieces.map(() => TokenType.normal);
  if (model === 'llama') {
    const scores = tk.rawNumArr('.scores') ?? pieces.map(() => 0);
    const unk = tk.num('.unknown_token_id');
    const src: ScoredVocabSource = {
      kind: 'scored-vocab',
      pieces,
      scores,
      types,
      bosTokenId: spec.bosTokenId,
      eosTokenIds: spec.eosTokenIds,
      addDummyPrefix: tk.bool('.add_space_prefix') ?? true,
      origin: g.file,
    };
    if (unk !== undefined) src.unkTokenId = unk;
    return src;
  }
  if (model === 'gpt2') {
    const src: ByteBpeSource = {
      kind: 'byte-bpe',
      pieces,
      merges: tk.strArr('.merges') ?? missing(g.file, 'tokenizer.ggml.merges'),
      types,
      bosTokenId: spec.bosTokenId,
      eosTokenIds: spec.eosTokenIds,
      origin: g.file,
    };
    const pre = tk.str('.pre');
    if (pre !== undefined) src.preTokenizer = pre;
    return src;
  }
  throw new ModelFormatError(`${g.file}: tokenizer model '${model}' is not supported (supported: llama, gpt2)`);
}

/** Build spec, rotate-half weights and tokenizer from a parsed GGUF. */
export function modelFromGguf(g: GgufFile): { spec: ModelSpec; weights: Weights; fileBlocks: FileBlocks; tokenizer: TokenizerSource | undefined; chatTemplate: string | undefined } {
  const spec = specFromGguf(g);
  const names = tensorNames(spec);
  const shapes = expectedWeightShapes(spec);
  // Check presence, type and shape of everything before decoding anything, and truncation once.
  let end = 0;
  for (const n of names) {
    const t = g.tensors.get(n.gguf);
    const want = shapes.get(n.hf)!;
    if (!t) throw new ModelFormatError(`${g.file}: missing tensor ${n.gguf} (expected shape ${formatShape(want)})`);
    if (!sameShape(t.shape, want)) {
      throw new ModelFormatError(`${g.file}: tensor ${n.gguf} has shape ${formatShape(t.shape)}, expected ${formatShape(want)} from the metadata`);
    }
    end = Math.max(end, t.offset + tensorByteSize(g, t));
  }
  requireBytes(g.file, g.bytes.length, end);
  const weights: Weights = new Map();
  const fileBlocks = new Map<string, BlockQuantizedMatrix>();
  for (const n of names) {
    const t = readGgufTensor(g, n.gguf);
    weights.set(n.hf, n.ropeHeads !== undefined ? interleavedToRotateHalf(t, n.ropeHeads) : t);
    // The embedding's blocks serve only as a tied LM head (the gather reads float).
    if (n.hf === weightName.embed && !spec.tiedEmbeddings) continue;
    const q = ggufBlocks(g, n.gguf);
    if (q) fileBlocks.set(n.hf, n.ropeHeads !== undefined ? permuteBlockRows(q, ropeRowOrder(q.n, n.ropeHeads, true)) : q);
  }
  checkModel(spec, weights, g.file);
  return { spec, weights, fileBlocks, tokenizer: tokenizerFromGguf(g, spec), chatTemplate: new Meta(g, '').str('tokenizer.chat_template') };
}

/** Read a GGUF model file. `tokenizerPath` (a llama2.c tokenizer) is used only when the GGUF has none. */
export async function readGguf(path: string, options: { tokenizerPath?: string } = {}): Promise<LoadedModel> {
  const g = parseGguf(await readCheckpointFile(path), path);
  const { spec, weights, fileBlocks, tokenizer: embedded, chatTemplate } = modelFromGguf(g);
  let tokenizer: TokenizerSource;
  if (embedded) tokenizer = embedded;
  else if (options.tokenizerPath) {
    const tok = await readLlama2cTokenizer(options.tokenizerPath);
    if (tok.pieces.length !== spec.vocabSize) {
      throw new ModelFormatError(
        `tokenizer vocabulary size mismatch: ${options.tokenizerPath} has ${tok.pieces.length} tokens but the model ${path} has vocab_size ${spec.vocabSize}`,
      );
    }
    tokenizer = tok;
  } else throw new ModelFormatError(`${path}: no tokenizer metadata (tokenizer.ggml.model); pass a tokenizer path`);
  const model: LoadedModel = { spec, weights, tokenizer, format: 'gguf', path };
  if (chatTemplate !== undefined) model.chatTemplate = chatTemplate;
  if (fileBlocks.size > 0) model.fileBlocks = fileBlocks;
  return model;
}

// ---------------------------------------------------------------------------------------------
// Writing

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
  const wholeBlocks = matrix && t.shape[1]! % Q8_0_BLOCK === 0;
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
  for (const n of tensorNames(spec)) {
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
