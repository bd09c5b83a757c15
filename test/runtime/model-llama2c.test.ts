import assert from 'node:assert/strict';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { readLlama2c, readLlama2cTokenizer } from '../../src/runtime/model/llama2c.ts';
import { defaultModelPath } from '../../src/runtime/model/load.ts';
import { rotateHalfToInterleaved } from '../../src/runtime/model/rope-layout.ts';
import { ModelFormatError, weightName } from '../../src/runtime/model/spec.ts';
import { TokenType } from '../../src/runtime/tokenizer/types.ts';
import { assertSameWeights, loadStories, tempDir } from './model-helpers.ts';

const checkpoint = defaultModelPath();
const tokenizerPath = join(dirname(checkpoint), 'tok512.bin');

test('stories260K reads as 5 layers, hidden 64, 8 heads over 4 KV heads, ffn 172, vocab 512, tied', async () => {
  const m = await loadStories();
  assert.equal(m.format, 'llama2c');
  assert.equal(m.spec.vocabSize, 512);
  assert.equal(m.spec.hidden, 64);
  assert.equal(m.spec.layers.length, 5);
  for (const l of m.spec.layers) assert.deepEqual(l, { heads: 8, kvHeads: 4, headDim: 8, ffn: 172 });
  assert.equal(m.spec.maxContext, 512);
  assert.equal(m.spec.tiedEmbeddings, true);
  assert.equal(m.spec.normEps, 1e-5);
  assert.deepEqual(m.spec.rope, { theta: 10000 });
  assert.equal(m.spec.bosTokenId, 1);
  assert.deepEqual(m.spec.eosTokenIds, [2]);
  assert.equal(m.weights.has(weightName.lmHead), false);
  assert.deepEqual(m.weights.get(weightName.k(0))!.shape, [32, 64]);
});

test('the llama2.c tokenizer becomes a scored vocabulary with sentencepiece pieces and inferred types', async () => {
  const m = await loadStories();
  const tok = m.tokenizer;
  assert.equal(tok.kind, 'scored-vocab');
  if (tok.kind !== 'scored-vocab') return;
  assert.equal(tok.origin, tokenizerPath);
  assert.equal(tok.pieces.length, 512);
  assert.deepEqual(tok.pieces.slice(0, 4), ['<unk>', '<s>', '</s>', '<0x00>']);
  assert.deepEqual(tok.types.slice(0, 4), [TokenType.unknown, TokenType.control, TokenType.control, TokenType.byte]);
  assert.equal(tok.types[258], TokenType.byte); // <0xFF>
  assert.equal(tok.pieces[259], '\u2581t'); // ' t' in the file
  assert.equal(tok.types[259], TokenType.normal);
  assert.equal(tok.addDummyPrefix, true);
  assert.equal(tok.bosTokenId, 1);
  assert.deepEqual(tok.eosTokenIds, [2]);
});

/** The version-1 export of `m`, laid out as llama2.c's export.py version1_export writes it. */
function version1Bytes(m: Awaited<ReturnType<typeof loadStories>>): Buffer {
  const { spec, weights } = m;
  const l0 = spec.layers[0]!;
  const header = Buffer.alloc(256);
  header.writeUInt32LE(0x616b3432, 0);
  header.writeInt32LE(1, 4);
  [spec.hidden, l0.ffn, spec.layers.length, l0.heads, l0.kvHeads, spec.vocabSize, spec.maxContext].forEach((v, i) => header.writeInt32LE(v, 8 + 4 * i));
  header.writeUInt8(1, 36);
  const L = spec.layers.map((_, i) => i);
  const w = (n: string) => weights.get(n)!;
  const tensors = [
    ...L.map((i) => w(weightName.attnNorm(i))),
    ...L.map((i) => w(weightName.mlpNorm(i))),
    w(weightName.finalNorm),
    w(weightName.embed),
    ...L.map((i) => rotateHalfToInterleaved(w(weightName.q(i)), l0.heads)),
    ...L.map((i) => rotateHalfToInterleaved(w(weightName.k(i)), l0.kvHeads)),
    ...L.map((i) => w(weightName.v(i))),
    ...L.map((i) => w(weightName.o(i))),
    ...L.map((i) => w(weightName.gate(i))),
    ...L.map((i) => w(weightName.down(i))),
    ...L.map((i) => w(weightName.up(i))),
  ];
  return Buffer.concat([header, ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]);
}

test('a version-1 (ak42) export reads to the same model as the legacy file', async () => {
  const m = await loadStories();
  const dir = await tempDir('l2c-v1');
  const path = join(dir, 'v1.bin');
  await writeFile(path, version1Bytes(m));
  const v1 = await readLlama2c(path, { tokenizerPath });
  assert.deepEqual(v1.spec, m.spec);
  assertSameWeights(v1.weights, m.weights);
});

test('a negative vocab_size in a legacy header means a separate classifier after the RoPE tables', async () => {
  const bytes = await readFile(checkpoint);
  const wcls = new Float32Array(512 * 64).map((_, i) => i / 1000);
  const untied = Buffer.concat([bytes, Buffer.from(wcls.buffer)]);
  untied.writeInt32LE(-512, 20);
  const dir = await tempDir('l2c-untied');
  await writeFile(join(dir, 'untied.bin'), untied);
  await copyFile(tokenizerPath, join(dir, 'tokenizer.bin'));
  const m = await readLlama2c(join(dir, 'untied.bin'));
  assert.equal(m.spec.tiedEmbeddings, false);
  assert.deepEqual(m.weights.get(weightName.lmHead)!.data, wcls);
});

test('a truncated checkpoint reports its size and the size it needs', async () => {
  const dir = await tempDir('l2c-trunc');
  const path = join(dir, 'cut.bin');
  await writeFile(path, (await readFile(checkpoint)).subarray(0, 1_000_000));
  await assert.rejects(readLlama2c(path, { tokenizerPath }), (e: Error) => {
    assert.ok(e instanceof ModelFormatError);
    assert.match(e.message, /truncated: .*cut\.bin has 1000000 bytes, needs 1056540/);
    return true;
  });
});

test('an int8 (version 2) export is refused with a re-export hint', async () => {
  const dir = await tempDir('l2c-v2');
  const path = join(dir, 'q.bin');
  const header = Buffer.alloc(256);
  header.writeUInt32LE(0x616b3432, 0);
  header.writeInt32LE(2, 4);
  await writeFile(path, header);
  await assert.rejects(readLlama2c(path, { tokenizerPath }), (e: Error) => {
    assert.ok(e instanceof ModelFormatError);
    assert.match(e.message, /version 2 .*not supported.*version 1/);
    return true;
  });
});

test('a tokenizer whose vocabulary size differs from the model is refused, naming both sizes and files', async () => {
  const bytes = await readFile(tokenizerPath);
  // Keep the first 300 tokens (max_token_length, then score/len/bytes records).
  let pos = 4;
  for (let i = 0; i < 300; i++) pos += 8 + bytes.readInt32LE(pos + 4);
  const dir = await tempDir('l2c-tok');
  const small = join(dir, 'tok300.bin');
  await writeFile(small, bytes.subarray(0, pos));
  assert.equal((await readLlama2cTokenizer(small)).pieces.length, 300);
  await assert.rejects(readLlama2c(checkpoint, { tokenizerPath: small }), (e: Error) => {
    assert.ok(e instanceof ModelFormatError);
    for (const part of ['300', '512', small, checkpoint]) assert.ok(e.message.includes(part), `message names ${part}: ${e.message}`);
    return true;
  });
});

test('the tokenizer is found beside the checkpoint as tokenizer.bin or tok*.bin, else a clear error', async () => {
  const dir = await tempDir('l2c-find');
  const path = join(dir, 'model.bin');
  await copyFile(checkpoint, path);
  await assert.rejects(readLlama2c(path), (e: Error) => e instanceof ModelFormatError && /no tokenizer for .*model\.bin/.test(e.message));
  await copyFile(tokenizerPath, join(dir, 'tok512.bin'));
  assert.equal((await readLlama2c(path)).tokenizer.origin, join(dir, 'tok512.bin'));
  await copyFile(tokenizerPath, join(dir, 'tokenizer.bin'));
  assert.equal((await readLlama2c(path)).tokenizer.origin, join(dir, 'tokenizer.bin'));
});
