/**
 * The GGUF v3 container on disk: header, metadata key/values, tensor infos, then each tensor's
 * bytes aligned to `general.alignment` (gguf-container.ts reads the same layout back).
 */
import { promises as fs } from 'node:fs';
import { writeAll } from './checkpoint-io.ts';
import { DEFAULT_ALIGNMENT, GGUF_MAGIC, type GgufKv, GgufType, type GgufValue } from './gguf-container.ts';

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
