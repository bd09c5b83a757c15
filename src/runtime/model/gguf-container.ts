/**
 * The GGUF container (llama.cpp's checkpoint format), versions 2 and 3, little-endian: reading the
 * header, metadata and tensor infos, and decoding tensors. gguf-model.ts makes a model of them,
 * gguf-writer.ts writes files.
 *
 * Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count, metadata key/values, tensor
 * infos (name, n_dims, ne[] innermost first, type, offset), padding to `general.alignment`
 * (default 32), then tensor data at the aligned offsets. GGUF's ne[] is the row-major shape
 * reversed: a [rows, cols] matrix is stored with ne = [cols, rows].
 *
 * Tensor types read: F32, F16, BF16, Q8_0 and Q4_0 (ggml-blocks.ts; dequantized to float32 for
 * float engines, or taken as they are as MatMulNBits blocks).
 */
import type { BlockQuantizedMatrix } from './block-quantization.ts';
import { ByteReader, copyF32, requireBytes } from './checkpoint-io.ts';
import { dequantizeQ4_0, dequantizeQ8_0, GGML_BLOCK, ggmlBlockBytes, ggmlBlocksToMatrix } from './ggml-blocks.ts';
import { decodeBf16, decodeF16 } from './half.ts';
import { ModelFormatError } from './spec.ts';
import { numel, type Tensor } from './tensor.ts';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const DEFAULT_ALIGNMENT = 32;

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
export function tensorByteSize(g: GgufFile, t: GgufTensorInfo): number {
  const n = numel(t.shape);
  switch (t.type) {
    case GgmlType.F32: return 4 * n;
    case GgmlType.F16:
    case GgmlType.BF16: return 2 * n;
    case GgmlType.Q8_0:
    case GgmlType.Q4_0: {
      const inner = t.shape[t.shape.length - 1]!;
      const name = ggmlTypeName(t.type);
      if (inner % GGML_BLOCK !== 0) throw new ModelFormatError(`${g.file}: ${name} tensor ${t.name} has rows of ${inner}, not a multiple of ${GGML_BLOCK}`);
      return (n / GGML_BLOCK) * ggmlBlockBytes(blockBits(t.type));
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

/** Bits per code of a block-quantized ggml type. */
function blockBits(type: number): 4 | 8 {
  return type === GgmlType.Q8_0 ? 8 : 4;
}

/**
 * A Q8_0 or Q4_0 matrix's blocks as MatMulNBits reads them, straight from the file's bytes
 * (ggmlBlocksToMatrix). Undefined for other types and for anything but a matrix.
 */
export function ggufBlocks(g: GgufFile, name: string): BlockQuantizedMatrix | undefined {
  const t = g.tensors.get(name);
  if (!t || t.shape.length !== 2 || (t.type !== GgmlType.Q8_0 && t.type !== GgmlType.Q4_0)) return undefined;
  const [n, k] = t.shape as [number, number];
  const size = tensorByteSize(g, t);
  requireBytes(g.file, g.bytes.length, t.offset + size);
  return ggmlBlocksToMatrix(g.bytes.subarray(t.offset, t.offset + size), blockBits(t.type), n, k);
}
