/**
 * IEEE binary16 (F16) and bfloat16 (BF16) <-> float32. Widening is exact; narrowing rounds to
 * nearest, ties to even (what PyTorch, numpy and ggml do), overflowing to ±Inf. Array codecs work
 * on raw bits so NaN payloads and signed zeros survive, and use little-endian byte order (the
 * order of safetensors and GGUF).
 */

/** float32 bits of the binary16 value with bits `h`. */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (man << 13)) >>> 0; // Inf / NaN
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (man << 13)) >>> 0;
  if (man === 0) return sign >>> 0; // ±0
  // Subnormal: shift the mantissa up until the implicit bit appears, lowering the exponent.
  let e = 113;
  let m = man;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/** binary16 bits nearest to the float32 with bits `x` (round to nearest, ties to even). */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let man = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man !== 0 ? 0x200 | (man >>> 13) : 0); // NaN stays NaN (quiet)
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00; // too large: Inf
  if (e <= 0) {
    // Result is subnormal (or zero): value / 2^-24, rounded.
    if (e < -10) return sign; // below half the smallest subnormal
    man |= 0x800000;
    const shift = 14 - e;
    let h = man >>> shift;
    const rem = man & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // a carry may reach Inf, which is correct
  return sign | h;
}

/** float32 bits of the bfloat16 value with bits `h` (bfloat16 is the top half of a float32). */
export function bf16BitsToF32Bits(h: number): number {
  return (h << 16) >>> 0;
}

/** bfloat16 bits nearest to the float32 with bits `x` (round to nearest, ties to even). */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function bitsOf(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}
function fromBits(bits: number): number {
  scratchU32[0] = bits;
  return scratchF32[0]!;
}

/** `x` rounded to float32 and then to the nearest binary16, as a number. */
export function roundToF16(x: number): number {
  return fromBits(f16BitsToF32Bits(f32BitsToF16Bits(bitsOf(x))));
}

/** `x` rounded to float32 and then to the nearest bfloat16, as a number. */
export function roundToBf16(x: number): number {
  return fromBits(bf16BitsToF32Bits(f32BitsToBf16Bits(bitsOf(x))));
}

/** The value of binary16 bits `h`. */
export function f16ToNumber(h: number): number {
  return fromBits(f16BitsToF32Bits(h));
}

/** binary16 bits for the number `x`. */
export function numberToF16(x: number): number {
  return f32BitsToF16Bits(bitsOf(x));
}

// All 65536 binary16 values widened once; decoding a tensor is then a table lookup per element.
let f16Table: Uint32Array | undefined;
function table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

/** Decode `count` little-endian binary16 values starting at `offset` in `bytes`. */
export function decodeF16(bytes: Uint8Array, offset: number, count: number): Float32Array {
  const t = table();
  const out = new Float32Array(count);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0, p = offset; i < count; i++, p += 2) bits[i] = t[bytes[p]! | (bytes[p + 1]! << 8)]!;
  return out;
}

/** Decode `count` little-endian bfloat16 values starting at `offset` in `bytes`. */
export function decodeBf16(bytes: Uint8Array, offset: number, count: number): Float32Array {
  const out = new Float32Array(count);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0, p = offset; i < count; i++, p += 2) bits[i] = ((bytes[p]! | (bytes[p + 1]! << 8)) << 16) >>> 0;
  return out;
}

/** Encode float32 values as little-endian binary16. */
export function encodeF16(data: Float32Array): Uint8Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint8Array(data.length * 2);
  for (let i = 0; i < data.length; i++) {
    const h = f32BitsToF16Bits(bits[i]!);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

/** Encode float32 values as little-endian bfloat16. */
export function encodeBf16(data: Float32Array): Uint8Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint8Array(data.length * 2);
  for (let i = 0; i < data.length; i++) {
    const h = f32BitsToBf16Bits(bits[i]!);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}
