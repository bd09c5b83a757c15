/**
 * safetensors: 8-byte little-endian header length, a JSON header
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: {...} }` with offsets
 * relative to the end of the header, then the raw little-endian tensor bytes. We read F32, F16
 * and BF16 (widened to float32) and write F32 (default), F16 or BF16.
 */
import { promises as fs } from 'node:fs';
import { ModelFormatError } from './spec.ts';
import { numel } from './tensor.ts';
import type { Tensor } from './tensor.ts';
import { copyF32, f32Bytes, formatShape, readCheckpointFile, requireBytes, writeAll } from './checkpoint-io.ts';
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from './half.ts';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

export const BYTES_PER: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };

function isDtype(s: unknown): s is SafetensorsDtype {
  return s === 'F32' || s === 'F16' || s === 'BF16';
}

/** One tensor's header entry; `begin`/`end` are absolute byte offsets in the file. */
export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** A parsed file: the header, validated against the file size, and lazy float32 decoding. */
export interface SafetensorsFile {
  file: string;
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** Decode one tensor to float32 (F32 is a bit-exact copy). */
  read(name: string): Tensor;
}

/** Parse and validate a safetensors file already in memory. */
export function parseSafetensors(bytes: Uint8Array, file: string): SafetensorsFile {
  requireBytes(file, bytes.length, 8);
  const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  requireBytes(file, bytes.length, 8 + headerLen);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new ModelFormatError(`${file}: safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ModelFormatError(`${file}: safetensors header is not a JSON object`);
  }
  const dataStart = 8 + headerLen;
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  let dataEnd = dataStart;
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw && typeof raw === 'object') metadata = raw as Record<string, string>;
      continue;
    }
    const bad = (msg: string) => new ModelFormatError(`${file}: tensor ${name}: ${msg}`);
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (!info || typeof info !== 'object') throw bad('header entry is not an object');
    if (!isDtype(info.dtype)) {
      throw bad(`unsupported dtype ${JSON.stringify(info.dtype)} (supported: F32, F16, BF16)`);
    }
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`invalid shape ${JSON.stringify(shape)}`);
    }
    const offs = info.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw bad(`invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [b, e] = offs as [number, number];
    const need = numel(shape as number[]) * BYTES_PER[info.dtype];
    if (e < b || e - b !== need) {
      throw bad(`data_offsets [${b}, ${e}] span ${e - b} bytes, but ${info.dtype} ${formatShape(shape as number[])} needs ${need}`);
    }
    entries.set(name, { name, dtype: info.dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + e });
    dataEnd = Math.max(dataEnd, dataStart + e);
  }
  requireBytes(file, bytes.length, dataEnd);

  return {
    file,
    entries,
    metadata,
    read(name: string): Tensor {
      const ent = entries.get(name);
      if (!ent) throw new ModelFormatError(`${file}: no tensor ${name}`);
      const n = numel(ent.shape);
      const data =
        ent.dtype === 'F32'
          ? copyF32(bytes, ent.begin, n)
          : ent.dtype === 'F16'
            ? decodeF16(bytes, ent.begin, n)
            : decodeBf16(bytes, ent.begin, n);
      return { shape: [...ent.shape], data };
    },
  };
}

/** Read a safetensors file from disk (whole-file read; see checkpoint-io.ts for the size limit). */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  return parseSafetensors(await readCheckpointFile(path), path);
}

/** Read every tensor of a safetensors file as float32. */
export async function readSafetensors(path: string): Promise<Map<string, Tensor>> {
  const f = await openSafetensors(path);
  const out = new Map<string, Tensor>();
  for (const name of f.entries.keys()) out.set(name, f.read(name));
  return out;
}

export interface WriteSafetensorsOptions {
  /** Storage dtype for every tensor (default F32, bit-exact). */
  dtype?: SafetensorsDtype;
  /** String-to-string `__metadata__` (default `{ format: 'pt' }`, which transformers expects). */
  metadata?: Record<string, string>;
}

function encode(t: Tensor, dtype: SafetensorsDtype): Uint8Array {
  if (dtype === 'F32') return f32Bytes(t.data);
  return dtype === 'F16' ? encodeF16(t.data) : encodeBf16(t.data);
}

/** Write tensors (in the given order) to a safetensors file, streaming one tensor at a time. */
export async function writeSafetensors(
  path: string,
  tensors: Iterable<[string, Tensor]>,
  options: WriteSafetensorsOptions = {},
): Promise<void> {
  const dtype = options.dtype ?? 'F32';
  const list = [...tensors];
  const header: Record<string, unknown> = { __metadata__: options.metadata ?? { format: 'pt' } };
  let offset = 0;
  for (const [name, t] of list) {
    if (t.data.length !== numel(t.shape)) throw new Error(`safetensors writer: tensor ${name} data does not match shape ${formatShape(t.shape)}`);
    const size = t.data.length * BYTES_PER[dtype];
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  const fh = await fs.open(path, 'w');
  try {
    await writeAll(fh, prefix);
    await writeAll(fh, headerBytes);
    for (const [, t] of list) await writeAll(fh, encode(t, dtype));
  } finally {
    await fh.close();
  }
}
