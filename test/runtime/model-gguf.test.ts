import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { dequantizeQ8_0, quantizeQ8_0 } from '../../src/runtime/model/ggml-blocks.ts';
import { GgmlType, GgufType, parseGguf } from '../../src/runtime/model/gguf-container.ts';
import { readGguf } from '../../src/runtime/model/gguf-model.ts';
import { buildGgufContents, writeGguf, writeGgufFile } from '../../src/runtime/model/gguf-writer.ts';
import type { GgufContents } from '../../src/runtime/model/gguf-writer.ts';
import { roundToF16 } from '../../src/runtime/model/half.ts';
import { defaultModelPath } from '../../src/runtime/model/load.ts';
import { ModelFormatError, weightName } from '../../src/runtime/model/spec.ts';
import type { ModelSpec } from '../../src/runtime/model/spec.ts';
import type { ScoredVocabSource } from '../../src/runtime/tokenizer/types.ts';
import { assertSameWeights, loadStories, randomWeights, tempDir } from './model-helpers.ts';

const bundledGguf = join(dirname(defaultModelPath()), 'stories260K.gguf');

async function storiesTokenizer(): Promise<ScoredVocabSource> {
  const tok = (await loadStories()).tokenizer;
  assert.equal(tok.kind, 'scored-vocab');
  return tok as ScoredVocabSource;
}

async function rejectsWith(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof ModelFormatError, `ModelFormatError expected, got ${e.name}: ${e.message}`);
    for (const part of parts) {
      if (typeof part === 'string') assert.ok(e.message.includes(part), `message should name ${part}: ${e.message}`);
      else assert.match(e.message, part);
    }
    return true;
  });
}

test('the bundled GGUF gives bit-identical weights to the llama2.c checkpoint after RoPE conversion', async () => {
  const fromBin = await loadStories();
  const fromGguf = await readGguf(bundledGguf);
  assert.equal(fromGguf.format, 'gguf');
  assertSameWeights(fromGguf.weights, fromBin.weights);
  // The GGUF stores output.weight as a byte copy of token_embd.weight: read as tied.
  assert.deepEqual({ ...fromGguf.spec, maxContext: 0 }, { ...fromBin.spec, maxContext: 0 });
  assert.equal(fromGguf.spec.maxContext, 2048); // llama.cpp's conversion wrote context_length 2048
  const tok = fromGguf.tokenizer as ScoredVocabSource;
  const ref = await storiesTokenizer();
  assert.equal(tok.kind, 'scored-vocab');
  assert.deepEqual(tok.pieces, ref.pieces);
  assert.deepEqual(tok.scores, ref.scores);
  assert.deepEqual(tok.types, ref.types);
  assert.equal(tok.unkTokenId, 0);
  assert.equal(tok.addDummyPrefix, true);
});

test('writeGguf f32 reads back identical, and its tensor bytes match llama.cpp\'s conversion', async () => {
  const m = await loadStories();
  const dir = await tempDir('gguf-rt');
  const path = join(dir, 'stories.gguf');
  await writeGguf(m, path, { tokenizer: await storiesTokenizer() });
  const back = await readGguf(path);
  assert.deepEqual(back.spec, m.spec);
  assertSameWeights(back.weights, m.weights);
  const tok = back.tokenizer as ScoredVocabSource;
  const ref = await storiesTokenizer();
  assert.deepEqual([tok.pieces, tok.scores, tok.types, tok.bosTokenId, tok.eosTokenIds, tok.unkTokenId, tok.addDummyPrefix], [
    ref.pieces, ref.scores, ref.types, ref.bosTokenId, ref.eosTokenIds, ref.unkTokenId, ref.addDummyPrefix,
  ]);

  // Same on-disk (interleaved) Q/K rows as the GGUF llama.cpp published.
  const mine = parseGguf(new Uint8Array(await readFile(path)), path);
  const theirs = parseGguf(new Uint8Array(await readFile(bundledGguf)), bundledGguf);
  for (const [name, t] of mine.tensors) {
    const o = theirs.tensors.get(name)!;
    assert.deepEqual(t.shape, o.shape, name);
    const size = t.shape.reduce((a, b) => a * b, 4);
    assert.ok(Buffer.from(mine.bytes.subarray(t.offset, t.offset + size)).equals(theirs.bytes.subarray(o.offset, o.offset + size)), `bytes of ${name}`);
  }
  assert.equal(mine.metadata.get('llama.rope.dimension_count')?.value, 8);
  assert.equal(mine.metadata.get('general.architecture')?.value, 'llama');
});

test('writeGguf f16 stores matrices as half precision and keeps norms exact', async () => {
  const m = await loadStories();
  const dir = await tempDir('gguf-f16');
  const path = join(dir, 'stories-f16.gguf');
  await writeGguf(m, path, { tokenizer: await storiesTokenizer(), dtype: 'f16' });
  const g = parseGguf(new Uint8Array(await readFile(path)), path);
  assert.equal(g.tensors.get('blk.0.attn_q.weight')!.type, GgmlType.F16);
  assert.equal(g.tensors.get('blk.0.attn_norm.weight')!.type, GgmlType.F32);
  const back = await readGguf(path);
  for (const [name, t] of m.weights) {
    const expected = t.shape.length === 2 ? t.data.map(roundToF16) : t.data;
    assert.deepEqual(back.weights.get(name)!.data, expected, name);
  }
});

/** writeGguf's contents for stories260K with `edit` applied, written to a temp file. */
async function editedGguf(name: string, edit: (c: GgufContents) => void): Promise<string> {
  const m = await loadStories();
  const c = buildGgufContents(m, { tokenizer: await storiesTokenizer(), name });
  edit(c);
  const path = join(await tempDir(`gguf-${name}`), `${name}.gguf`);
  await writeGgufFile(path, c);
  return path;
}

function replaceTensor(c: GgufContents, name: string, type: number, data: Uint8Array): void {
  const t = c.tensors.find((x) => x.name === name)!;
  t.type = type;
  t.data = data;
}

test('Q8_0 tensors are dequantized within the quantization error', async () => {
  const m = await loadStories();
  const gate = m.weights.get(weightName.gate(0))!; // [172, 64]: rows are two Q8_0 blocks
  const path = await editedGguf('q8', (c) => replaceTensor(c, 'blk.0.ffn_gate.weight', GgmlType.Q8_0, quantizeQ8_0(gate.data)));
  const back = await readGguf(path);
  const got = back.weights.get(weightName.gate(0))!;
  assert.deepEqual(got.shape, gate.shape);
  let maxErr = 0;
  for (let b = 0; b < gate.data.length / 32; b++) {
    const block = gate.data.subarray(b * 32, b * 32 + 32);
    const amax = block.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    const bound = (amax / 127) * (0.5 + 127 * 2 ** -11) + 1e-12; // rounding of q, plus the f16 scale
    for (let j = 0; j < 32; j++) {
      const err = Math.abs(got.data[b * 32 + j]! - block[j]!);
      maxErr = Math.max(maxErr, err);
      assert.ok(err <= bound, `block ${b} element ${j}: error ${err} > ${bound}`);
    }
  }
  assert.ok(maxErr > 0, 'values were actually quantized');
  // Everything else is untouched.
  assertSameWeights(back.weights, m.weights, [weightName.gate(0)]);
});

test('Q8_0 helpers round-trip exactly representable blocks', () => {
  const x = Float32Array.from({ length: 64 }, (_, i) => (i - 32) / 4); // multiples of 0.25, |x| <= 8
  const q = quantizeQ8_0(x);
  assert.equal(q.length, 2 * 34);
  const y = dequantizeQ8_0(q, 64);
  for (let i = 0; i < 64; i++) assert.ok(Math.abs(y[i]! - x[i]!) <= (8 / 127) * 0.51, `${x[i]} -> ${y[i]}`);
  assert.deepEqual(dequantizeQ8_0(quantizeQ8_0(new Float32Array(32)), 32), new Float32Array(32));
});

test('an unsupported tensor type is refused, naming the type and the tensor', async () => {
  const path = await editedGguf('q4k', (c) => replaceTensor(c, 'blk.1.ffn_up.weight', 12, new Uint8Array(172 * 64)));
  await rejectsWith(readGguf(path), 'Q4_K', 'blk.1.ffn_up.weight');
});

test('a corrupt GGUF magic or version is refused', async () => {
  const bytes = await readFile(bundledGguf);
  const dir = await tempDir('gguf-bad');
  const badMagic = join(dir, 'magic.gguf');
  await writeFile(badMagic, Buffer.concat([Buffer.from('GGUX'), bytes.subarray(4)]));
  await rejectsWith(readGguf(badMagic), 'not a GGUF file', 'GGUX');
  for (const version of [1, 7]) {
    const p = join(dir, `v${version}.gguf`);
    const copy = Buffer.from(bytes);
    copy.writeUInt32LE(version, 4);
    await writeFile(p, copy);
    await rejectsWith(readGguf(p), `unsupported GGUF version ${version}`);
  }
});

test('a truncated GGUF reports its size and the size it needs', async () => {
  const bytes = await readFile(bundledGguf);
  const p = join(await tempDir('gguf-trunc'), 'cut.gguf');
  await writeFile(p, bytes.subarray(0, 900_000));
  await rejectsWith(readGguf(p), /truncated: .*cut\.gguf has 900000 bytes, needs \d+/);
  await writeFile(p, bytes.subarray(0, 5000)); // inside the metadata
  await rejectsWith(readGguf(p), /truncated: .*cut\.gguf has 5000 bytes, needs \d+/);
});

test('a GGUF architecture other than llama is refused, naming it', async () => {
  const path = await editedGguf('arch', (c) => c.metadata.set('general.architecture', { type: GgufType.STRING, value: 'mamba' }));
  await rejectsWith(readGguf(path), "'mamba'");
});

test('a tensor shape that contradicts the GGUF metadata is refused, naming tensor and shapes', async () => {
  const path = await editedGguf('ffn', (c) => c.metadata.set('llama.feed_forward_length', { type: GgufType.UINT32, value: 100 }));
  await rejectsWith(readGguf(path), 'blk.0.ffn_gate.weight', '[172, 64]', '[100, 64]');
});

test('per-layer head and FFN arrays describe layers without attention or MLP', async () => {
  const m = await loadStories();
  const path = await editedGguf('arrays', (c) => {
    const arr = (value: number[]) => ({ type: GgufType.ARRAY, itemType: GgufType.INT32, value });
    c.metadata.set('llama.attention.head_count', arr([8, 8, 0, 8, 8]));
    c.metadata.set('llama.attention.head_count_kv', arr([4, 4, 0, 4, 4]));
    c.metadata.set('llama.feed_forward_length', arr([172, 172, 172, 0, 172]));
    c.tensors = c.tensors.filter((t) => !t.name.startsWith('blk.2.attn_') && !t.name.startsWith('blk.3.ffn_'));
  });
  const back = await readGguf(path);
  assert.deepEqual(back.spec.layers[2], { heads: 0, kvHeads: 0, headDim: 8, ffn: 172 });
  assert.deepEqual(back.spec.layers[3], { heads: 8, kvHeads: 4, headDim: 8, ffn: 0 });
  const kept = new Map([...m.weights].filter(([n]) => !/layers\.2\.(self_attn|input_layernorm)|layers\.3\.(mlp|post_attention)/.test(n)));
  assertSameWeights(back.weights, kept);
});

test('RoPE scaling (linear, llama3) survives a GGUF round trip', async () => {
  const base = await loadStories();
  const tokenizer = await storiesTokenizer();
  const dir = await tempDir('gguf-rope');
  const scalings: ModelSpec['rope'][] = [
    { theta: 10000, scaling: { type: 'linear', factor: 4 } },
    { theta: 500000, scaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } },
  ];
  for (const [i, rope] of scalings.entries()) {
    const spec = { ...base.spec, rope };
    const path = join(dir, `rope${i}.gguf`);
    await writeGguf({ spec, weights: base.weights }, path, { tokenizer });
    const back = await readGguf(path);
    assert.deepEqual(back.spec.rope, rope);
  }
});
