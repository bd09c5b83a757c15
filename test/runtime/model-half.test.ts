import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  bf16BitsToF32Bits,
  decodeBf16,
  decodeF16,
  encodeBf16,
  encodeF16,
  f16BitsToF32Bits,
  f16ToNumber,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
  numberToF16,
  roundToBf16,
  roundToF16,
} from '../../src/runtime/model/half.ts';

test('f16 decodes known values, including subnormals, infinities and signed zero', () => {
  assert.equal(f16ToNumber(0x3c00), 1);
  assert.equal(f16ToNumber(0xc000), -2);
  assert.equal(f16ToNumber(0x7bff), 65504);
  assert.equal(f16ToNumber(0x0001), 2 ** -24);
  assert.equal(f16ToNumber(0x03ff), 1023 * 2 ** -24);
  assert.equal(f16ToNumber(0x0400), 2 ** -14);
  assert.equal(f16ToNumber(0x7c00), Infinity);
  assert.equal(f16ToNumber(0xfc00), -Infinity);
  assert.ok(Number.isNaN(f16ToNumber(0x7e00)));
  assert.ok(Object.is(f16ToNumber(0x8000), -0));
});

test('every f16 value survives f16 -> f32 -> f16 exactly', () => {
  for (let h = 0; h < 65536; h++) {
    const back = f32BitsToF16Bits(f16BitsToF32Bits(h));
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) assert.ok((back & 0x7c00) === 0x7c00 && (back & 0x3ff) !== 0, `NaN ${h.toString(16)} stays NaN`);
    else assert.equal(back, h, `f16 bits 0x${h.toString(16)}`);
  }
});

test('f32 -> f16 rounds to nearest, ties to even, and overflows to infinity', () => {
  assert.equal(numberToF16(1 + 2 ** -11), 0x3c00); // tie between 1 and 1+2^-10: even (1)
  assert.equal(numberToF16(1 + 3 * 2 ** -11), 0x3c02); // tie between 1+2^-10 and 1+2^-9: even
  assert.equal(numberToF16(1 + 2 ** -11 + 2 ** -20), 0x3c01); // just above the tie
  assert.equal(numberToF16(1 / 3), 0x3555);
  assert.equal(numberToF16(65520), 0x7c00); // halfway to the next binade rounds to Inf
  assert.equal(numberToF16(65519), 0x7bff);
  assert.equal(numberToF16(2 ** -25), 0x0000); // tie between 0 and the smallest subnormal: even
  assert.equal(numberToF16(1.5 * 2 ** -25), 0x0001);
  assert.equal(numberToF16(3 * 2 ** -25), 0x0002); // tie between 1 and 2 subnormal units: even
  assert.equal(numberToF16(-1e-10), 0x8000);
});

test('bf16 keeps the top half of a float32, rounding to nearest even', () => {
  assert.equal(f32BitsToBf16Bits(0x3f800000), 0x3f80);
  assert.equal(f32BitsToBf16Bits(0x3f808000), 0x3f80); // tie, even stays
  assert.equal(f32BitsToBf16Bits(0x3f818000), 0x3f82); // tie, odd rounds up
  assert.equal(f32BitsToBf16Bits(0x3f808001), 0x3f81);
  assert.equal(f32BitsToBf16Bits(0x7f7fffff), 0x7f80); // max float rounds to Inf
  assert.equal(bf16BitsToF32Bits(0xbf80), 0xbf800000);
  assert.ok(Number.isNaN(roundToBf16(NaN)));
  assert.equal(roundToBf16(1 / 3), 0.333984375);
});

test('array codecs agree with the scalar rounding', () => {
  const data = new Float32Array([0, -0, 1, -2.5, 1 / 3, 1e-7, 70000, -1e-30, Math.PI, 12345.678]);
  const f16 = decodeF16(encodeF16(data), 0, data.length);
  const bf16 = decodeBf16(encodeBf16(data), 0, data.length);
  data.forEach((x, i) => {
    assert.ok(Object.is(f16[i], roundToF16(x)), `f16 ${x}`);
    assert.ok(Object.is(bf16[i], roundToBf16(x)), `bf16 ${x}`);
  });
});
