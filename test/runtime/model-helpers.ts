/** Shared fixtures for the model reader/writer tests (not a test file itself). */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { defaultModelPath } from '../../src/runtime/model/load.ts';
import { readLlama2c } from '../../src/runtime/model/llama2c.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import { expectedWeightShapes } from '../../src/runtime/model/spec.ts';
import type { ModelSpec } from '../../src/runtime/model/spec.ts';
import { tensor } from '../../src/runtime/model/tensor.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';

/** A fresh directory under the OS temp dir, removed when the test file finishes. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `mop-${prefix}-`));
  after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

let stories: Promise<LoadedModel> | undefined;
/** The bundled stories260K, read once per test file through the llama2.c reader. */
export function loadStories(): Promise<LoadedModel> {
  return (stories ??= readLlama2c(defaultModelPath()));
}

/** Same names, shapes and bit-identical float32 data (NaN payloads and -0 included). */
export function assertSameWeights(actual: Weights, expected: Weights, skip: readonly string[] = []): void {
  const names = (w: Weights) => [...w.keys()].filter((n) => !skip.includes(n)).sort();
  assert.deepEqual(names(actual), names(expected));
  for (const name of names(expected)) {
    const a = actual.get(name)!;
    const e = expected.get(name)!;
    assert.deepEqual(a.shape, e.shape, `shape of ${name}`);
    const ab = new Uint32Array(a.data.buffer, a.data.byteOffset, a.data.length);
    const eb = new Uint32Array(e.data.buffer, e.data.byteOffset, e.data.length);
    const i = ab.findIndex((x, k) => x !== eb[k]);
    assert.equal(i, -1, `${name} differs at element ${i}: ${a.data[i]} vs ${e.data[i]}`);
  }
}

/** Deterministic pseudo-random weights (mulberry32) for every tensor the spec expects. */
export function randomWeights(spec: ModelSpec, seed = 1): Weights {
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const w: Weights = new Map();
  for (const [name, shape] of expectedWeightShapes(spec)) {
    const t = tensor(shape);
    for (let i = 0; i < t.data.length; i++) t.data[i] = (rand() - 0.5) * 0.2;
    w.set(name, t);
  }
  return w;
}

/** A small tokenizer.json stand-in: the readers carry it through without interpreting it. */
export const minimalTokenizerJson = { version: '1.0', model: { type: 'BPE', vocab: { a: 0 }, merges: [] } };
