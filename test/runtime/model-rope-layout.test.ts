import assert from 'node:assert/strict';
import { test } from 'node:test';
import { interleavedToRotateHalf, rotateHalfToInterleaved } from '../../src/runtime/model/rope-layout.ts';
import { tensor } from '../../src/runtime/model/tensor.ts';

function rowsOf(t: { data: Float32Array; shape: number[] }): number[] {
  const cols = t.shape[1]!;
  return Array.from({ length: t.shape[0]! }, (_, r) => t.data[r * cols]!);
}

test('interleaved -> rotate-half moves row 2j to j and row 2j+1 to j+half, per head', () => {
  // 2 heads of width 6, one column holding the row index.
  const t = tensor([12, 1], Float32Array.from({ length: 12 }, (_, i) => i));
  assert.deepEqual(rowsOf(interleavedToRotateHalf(t, 2)), [0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11]);
});

test('rotate-half -> interleaved is the exact inverse', () => {
  const t = tensor([16, 3], Float32Array.from({ length: 48 }, (_, i) => Math.sin(i)));
  assert.deepEqual(rotateHalfToInterleaved(interleavedToRotateHalf(t, 4), 4), t);
  assert.deepEqual(interleavedToRotateHalf(rotateHalfToInterleaved(t, 2), 2), t);
});

/** RoPE at position `pos` on one head, pairing dims (2i, 2i+1) or (i, i+half). */
function rope(v: number[], pos: number, interleaved: boolean): number[] {
  const d = v.length;
  const half = d / 2;
  const out = [...v];
  for (let i = 0; i < half; i++) {
    const angle = pos * 10000 ** (-(2 * i) / d);
    const [a, b] = interleaved ? [2 * i, 2 * i + 1] : [i, i + half];
    out[a] = v[a]! * Math.cos(angle) - v[b]! * Math.sin(angle);
    out[b] = v[a]! * Math.sin(angle) + v[b]! * Math.cos(angle);
  }
  return out;
}

test('converted Q/K weights give the same attention scores under rotate-half RoPE', () => {
  const headDim = 8;
  const cols = 5;
  const x = [0.3, -1.2, 0.7, 2.0, -0.4];
  const wq = tensor([headDim, cols], Float32Array.from({ length: headDim * cols }, (_, i) => Math.cos(i * 1.7)));
  const wk = tensor([headDim, cols], Float32Array.from({ length: headDim * cols }, (_, i) => Math.sin(i * 0.9)));
  const matvec = (w: { data: Float32Array }) =>
    Array.from({ length: headDim }, (_, r) => x.reduce((s, xv, c) => s + w.data[r * cols + c]! * xv, 0));
  const dot = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i]!, 0);
  const original = dot(rope(matvec(wq), 3, true), rope(matvec(wk), 7, true));
  const converted = dot(
    rope(matvec(interleavedToRotateHalf(wq, 1)), 3, false),
    rope(matvec(interleavedToRotateHalf(wk, 1)), 7, false),
  );
  assert.ok(Math.abs(original - converted) < 1e-9, `${original} vs ${converted}`);
});
