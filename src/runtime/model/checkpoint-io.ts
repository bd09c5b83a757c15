/**
 * What every checkpoint reader shares: reading a file whole (with a clear size limit), bounds
 * checks that report truncation as such instead of a RangeError from a DataView, exact float32
 * copies, and the final "spec + every weight has its expected shape" check.
 */
import { promises as fs } from 'node:fs';
import { ModelFormatError, expectedWeightShapes, validateSpec } from './spec.ts';
import type { ModelSpec } from './spec.ts';
import { numel, sameShape } from './tensor.ts';
import type { Weights } from './tensor.ts';

/** Largest file `fs.readFile` returns (Node caps a single Buffer read at 2 GiB). */
export const MAX_FILE_BYTES = 2 ** 31 - 1;

// Tensor bytes are little-endian in every format we read; float32 copies are byte copies.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('model readers require a little-endian host');

function isNotFound(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Whether `path` exists (any kind of entry). */
export async function exists(path: string): Promise<boolean> {
  try {
    await fs.stat(path);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Read a whole file; a missing file or one over the 2 GiB limit is a ModelFormatError. */
export async function readCheckpointFile(path: string): Promise<Uint8Array> {
  let size: number;
  try {
    const st = await fs.stat(path);
    if (!st.isFile()) throw new ModelFormatError(`${path} is not a regular file`);
    size = st.size;
  } catch (e) {
    if (isNotFound(e)) throw new ModelFormatError(`no such file: ${path}`);
    throw e;
  }
  if (size > MAX_FILE_BYTES) {
    throw new ModelFormatError(
      `${path} is ${size} bytes; checkpoint files are read whole into memory and must be under 2 GiB ` +
        `(shard larger models into several safetensors files)`,
    );
  }
  const buf = await fs.readFile(path);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function truncatedError(file: string, have: number, need: number): ModelFormatError {
  return new ModelFormatError(`truncated: ${file} has ${have} bytes, needs ${need}`);
}

/** Throw the truncation error unless the file holds at least `need` bytes. */
export function requireBytes(file: string, have: number, need: number): void {
  if (have < need) throw truncatedError(file, have, need);
}

/** Bit-exact float32 copy of `count` little-endian floats at `offset` (any alignment). */
export function copyF32(bytes: Uint8Array, offset: number, count: number): Float32Array {
  const start = bytes.byteOffset + offset;
  return new Float32Array(bytes.buffer.slice(start, start + count * 4));
}

/** The raw little-endian bytes of a float32 array (a view, not a copy). */
export function f32Bytes(data: Float32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Sequential little-endian reader over a file's bytes; running off the end is a truncation error. */
export class ByteReader {
  pos = 0;
  private readonly view: DataView;
  private static readonly decoder = new TextDecoder('utf-8', { fatal: true });

  constructor(
    readonly bytes: Uint8Array,
    readonly file: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(n: number): void {
    requireBytes(this.file, this.bytes.length, this.pos + n);
  }
  u8(): number {
    this.need(1);
    return this.view.getUint8(this.pos++);
  }
  i8(): number {
    this.need(1);
    return this.view.getInt8(this.pos++);
  }
  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  i16(): number {
    this.need(2);
    const v = this.view.getInt16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f32(): number {
    this.need(4);
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }
  u64big(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  i64big(): bigint {
    this.need(8);
    const v = this.view.getBigInt64(this.pos, true);
    this.pos += 8;
    return v;
  }
  /** A u64 used as a size or count; anything past the file end is reported as truncation. */
  u64size(): number {
    const v = this.u64big();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw truncatedError(this.file, this.bytes.length, Number.MAX_SAFE_INTEGER);
    return Number(v);
  }
  bytesView(n: number): Uint8Array {
    this.need(n);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  utf8(n: number, what: string): string {
    const raw = this.bytesView(n);
    try {
      return ByteReader.decoder.decode(raw);
    } catch {
      throw new ModelFormatError(`${this.file}: ${what} is not valid UTF-8 (at byte ${this.pos - n})`);
    }
  }
}

/** A shape as it appears in messages: `[512, 64]`. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * The last step of every reader: the spec is structurally valid and the weights are exactly the
 * expected set, each with its expected shape. `where` names the checkpoint in messages.
 */
export function checkModel(spec: ModelSpec, weights: Weights, where: string): void {
  validateSpec(spec, where);
  const expected = expectedWeightShapes(spec);
  for (const [name, shape] of expected) {
    const t = weights.get(name);
    if (!t) throw new ModelFormatError(`${where}: missing tensor ${name} (expected shape ${formatShape(shape)})`);
    if (!sameShape(t.shape, shape)) {
      throw new ModelFormatError(`${where}: tensor ${name} has shape ${formatShape(t.shape)}, expected ${formatShape(shape)}`);
    }
    if (t.data.length !== numel(shape)) {
      throw new ModelFormatError(`${where}: tensor ${name} holds ${t.data.length} values, shape ${formatShape(shape)} needs ${numel(shape)}`);
    }
  }
  for (const name of weights.keys()) {
    if (!expected.has(name)) throw new ModelFormatError(`${where}: unexpected tensor ${name} for this model's spec`);
  }
}

/** Write all of `data` at the handle's current position (a single write may be partial). */
export async function writeAll(fh: fs.FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done);
    if (bytesWritten <= 0) throw new Error('write failed: no bytes written');
    done += bytesWritten;
  }
}
