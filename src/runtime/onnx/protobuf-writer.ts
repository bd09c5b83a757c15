/**
 * A minimal protobuf encoder, enough to serialise ONNX ModelProto. Messages are built as lists of
 * byte chunks so multi-hundred-megabyte weight buffers are referenced, not copied, until the
 * single final concatenation.
 */
export class ProtoMessage {
  readonly chunks: Uint8Array[] = [];
  byteLength = 0;

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.byteLength += bytes.byteLength;
  }

  private tag(field: number, wireType: number): void {
    this.push(varint(BigInt(field * 8 + wireType)));
  }

  /** int32/int64/enum/bool as a varint (negative values as 10-byte two's complement, per spec). */
  int(field: number, value: number | bigint): this {
    this.tag(field, 0);
    this.push(varint(BigInt.asUintN(64, BigInt(value))));
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, 2);
    this.push(varint(BigInt(value.byteLength)));
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, value: ProtoMessage): this {
    this.tag(field, 2);
    this.push(varint(BigInt(value.byteLength)));
    for (const c of value.chunks) this.push(c);
    return this;
  }

  /** Packed repeated varints (proto3 default for repeated scalars). */
  packedInts(field: number, values: readonly (number | bigint)[]): this {
    const parts = values.map((v) => varint(BigInt.asUintN(64, BigInt(v))));
    const len = parts.reduce((a, p) => a + p.byteLength, 0);
    this.tag(field, 2);
    this.push(varint(BigInt(len)));
    for (const p of parts) this.push(p);
    return this;
  }

  packedFloats(field: number, values: readonly number[]): this {
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setFloat32(i * 4, v, true));
    return this.bytes(field, b);
  }

  toBytes(): Uint8Array {
    const out = new Uint8Array(this.byteLength);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.byteLength;
    }
    return out;
  }
}

function varint(value: bigint): Uint8Array {
  const bytes: number[] = [];
  let v = value;
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    bytes.push(b);
  } while (v !== 0n);
  return Uint8Array.from(bytes);
}
