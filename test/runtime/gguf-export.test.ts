import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { dequantizeMatrix, quantizeMatrix } from '../../src/runtime/model/block-quantization.ts';
import { GgmlType, GgufType, parseGguf } from '../../src/runtime/model/gguf-container.ts';
import { ZERO_MLP_WIDTH } from '../../src/runtime/model/gguf-export-form.ts';
import { readGguf } from '../../src/runtime/model/gguf-model.ts';
import { buildGgufContents, type GgufWriteDtype, writeGguf, writeGgufFile } from '../../src/runtime/model/gguf-writer.ts';
import { ModelFormatError, type ModelSpec, weightName } from '../../src/runtime/model/spec.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { byteBpeToTokenizerJson } from '../../src/runtime/tokenizer/byte-bpe.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { scoredVocabToHfTokenizer } from '../../src/runtime/tokenizer/from-scored-vocab.ts';
import type { ByteBpeSource, ScoredVocabSource, TokenizerSource } from '../../src/runtime/tokenizer/types.ts';
import { referenceForward } from '../helpers/reference-forward.ts';
import { loadStories, randomWeights, tempDir } from './model-helpers.ts';

const TOKENS = [1, 300, 411, 290, 500, 273, 318, 402, 260];

/** stories260K's spec with its 5 layers reshaped: `layers` replaces them (same hidden, head size). */
async function shaped(layers: [heads: number, kv: number, ffn: number][]): Promise<{ spec: ModelSpec; weights: Weights; tokenizer: TokenizerSource }> {
  const m = await loadStories();
  const headDim = m.spec.layers[0]!.headDim;
  const spec: ModelSpec = { ...m.spec, layers: layers.map(([heads, kvHeads, ffn]) => ({ heads, kvHeads, headDim, ffn })) };
  return { spec, weights: randomWeights(spec, 5), tokenizer: m.tokenizer };
}

async function exported(model: { spec: ModelSpec; weights: Weights; tokenizer: TokenizerSource }, dtype: GgufWriteDtype, name = 'm') {
  const path = join(await tempDir('gguf-export'), `${name}.gguf`);
  await writeGguf(model, path, { dtype, tokenizer: model.tokenizer, name });
  return { path, g: parseGguf(new Uint8Array(await readFile(path)), path), back: await readGguf(path) };
}

async function rejectsWith(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof ModelFormatError, `ModelFormatError expected, got ${e.name}: ${e.message}`);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    for (const part of parts) assert.ok(e.message.includes(part), `message should name ${part}: ${e.message}`);
    return true;
  });
}

test('a model whose layers differ is written as deci with per-layer arrays, removed layers left out and blocks renumbered, and computes the same', async () => {
  // layer 1: no attention; layer 2: nothing (not written); layer 3: attention without MLP.
  const m = await shaped([[8, 4, 172], [0, 0, 96], [0, 0, 0], [4, 2, 0], [6, 3, 40]]);
  const { g, back } = await exported(m, 'f32');
  const md = (k: string) => g.metadata.get(k);
  assert.equal(md('general.architecture')!.value, 'deci');
  assert.equal(md('deci.block_count')!.value, 4);
  assert.equal(md('deci.attention.head_count')!.itemType, GgufType.INT32);
  assert.deepEqual(md('deci.attention.head_count')!.value, [8, 0, 4, 6]);
  assert.deepEqual(md('deci.attention.head_count_kv')!.value, [4, 0, 2, 3]);
  assert.deepEqual(md('deci.feed_forward_length')!.value, [172, 96, ZERO_MLP_WIDTH, 40]);
  assert.equal(md('deci.attention.key_length')!.value, 8);
  assert.equal(md('deci.rope.dimension_count')!.value, 8);
  assert.ok(!g.tensors.has('blk.1.attn_q.weight') && !g.tensors.has('blk.1.attn_norm.weight'), 'attention-free block has no attn tensors');
  assert.ok(!g.tensors.has('blk.4.ffn_down.weight'), 'the empty layer is not written');
  assert.deepEqual(back.spec.layers.map((l) => [l.heads, l.kvHeads, l.ffn]), [[8, 4, 172], [0, 0, 96], [4, 2, ZERO_MLP_WIDTH], [6, 3, 40]]);
  assert.deepEqual(referenceForward(back.spec, back.weights, TOKENS), referenceForward(m.spec, m.weights, TOKENS));
});

test('a layer with attention and no MLP gets an all-zero 32-wide MLP, which adds exactly 0 (llama.cpp deci drops such a layer\'s attention when n_ff is 0)', async () => {
  const m = await shaped([[8, 4, 172], [8, 4, 0]]);
  const { back } = await exported(m, 'f32');
  assert.equal(back.spec.layers[1]!.ffn, ZERO_MLP_WIDTH);
  assert.ok(back.weights.get(weightName.down(1))!.data.every((x) => x === 0));
  assert.ok(back.weights.get(weightName.mlpNorm(1))!.data.every((x) => x === 1));
  assert.deepEqual(referenceForward(back.spec, back.weights, TOKENS), referenceForward(m.spec, m.weights, TOKENS));
});

test('an attention-free first block gets one zero KV group (llama.cpp takes the head size from layer 0), which adds exactly 0', async () => {
  const m = await shaped([[0, 0, 172], [8, 4, 172]]);
  const { g, back } = await exported(m, 'f32');
  assert.deepEqual(g.metadata.get('deci.attention.head_count')!.value, [1, 8]);
  assert.deepEqual(g.metadata.get('deci.attention.head_count_kv')!.value, [1, 4]);
  assert.ok(back.weights.get(weightName.o(0))!.data.every((x) => x === 0));
  assert.deepEqual(referenceForward(back.spec, back.weights, TOKENS), referenceForward(m.spec, m.weights, TOKENS));
});

test('q8_0 / q4_0 zero-pad widths that are not whole 32-value blocks: the padded rows are our int8 blocks of the real rows, and the model computes the same', async () => {
  // o_proj rows 3·2·8 = 48 → 4 KV groups (64); ffn 172 → 192, 40 → 64.
  const m = await shaped([[6, 3, 172], [8, 4, 40]]);
  const { g, back } = await exported(m, 'q8_0');
  assert.equal(g.tensors.get('blk.0.ffn_down.weight')!.type, GgmlType.Q8_0);
  assert.equal(g.tensors.get('blk.0.attn_output.weight')!.type, GgmlType.Q8_0);
  assert.deepEqual(back.spec.layers.map((l) => [l.heads, l.kvHeads, l.ffn]), [[8, 4, 192], [8, 4, 64]]);
  // The served values of the unpadded model (int8 pads a ragged block with zeros, then quantizes).
  const served: Weights = new Map([...m.weights].map(([n, t]) => [n, t.shape.length === 2 ? { shape: t.shape, data: dequantizeMatrix(quantizeMatrix(t.data, t.shape[0]!, t.shape[1]!, 8)) } : t]));
  const down = back.weights.get(weightName.down(0))!;
  for (let r = 0; r < 64; r++) {
    assert.deepEqual(down.data.subarray(r * 192, r * 192 + 172), served.get(weightName.down(0))!.data.subarray(r * 172, (r + 1) * 172));
    assert.ok(down.data.subarray(r * 192 + 172, (r + 1) * 192).every((x) => x === 0));
  }
  assert.deepEqual(referenceForward(back.spec, back.weights, TOKENS), referenceForward(m.spec, served, TOKENS));
  const q4 = await exported(m, 'q4_0', 'q4');
  assert.equal(q4.g.tensors.get('blk.1.ffn_down.weight')!.type, GgmlType.Q4_0);
});

for (const dtype of ['f32', 'f16', 'q8_0', 'q4_0'] as const) {
  test(`export → load → export is byte-identical (${dtype}, deci and llama)`, async () => {
    for (const layers of [
      [[8, 4, 172], [0, 0, 96], [4, 2, 0], [6, 3, 40]],
      [[8, 4, 172], [8, 4, 172]],
    ] as [number, number, number][][]) {
      const first = await exported(await shaped(layers), dtype, 'rt');
      const again = join(await tempDir('gguf-rt'), 'rt.gguf');
      await writeGguf(first.back, again, { dtype, tokenizer: first.back.tokenizer, name: 'rt' });
      assert.ok((await readFile(again)).equals(await readFile(first.path)), `${dtype} ${first.g.metadata.get('general.architecture')!.value}`);
    }
  });
}

/** `shaped`, as a qwen2 model: q/k/v biases (random, so a lost or misplaced bias shows). */
async function qwen2Shaped(layers: [heads: number, kv: number, ffn: number][]): Promise<{ spec: ModelSpec; weights: Weights; tokenizer: TokenizerSource }> {
  const m = await shaped(layers);
  const spec: ModelSpec = { ...m.spec, family: 'qwen2', attentionBias: true };
  return { spec, weights: randomWeights(spec, 6), tokenizer: m.tokenizer };
}

test('a model with q/k/v biases (qwen2) is written as llama.cpp\'s qwen2 (its biases, Q/K rows as Hugging Face has them) and reads back the same', async () => {
  const m = await qwen2Shaped([[8, 4, 172], [8, 4, 172]]);
  const { g, back } = await exported(m, 'f32');
  assert.equal(g.metadata.get('general.architecture')!.value, 'qwen2');
  assert.equal(g.metadata.get('qwen2.attention.head_count')!.value, 8);
  assert.ok(g.tensors.has('blk.1.attn_k.bias'));
  assert.deepEqual(back.spec, m.spec);
  for (const [name, t] of m.weights) assert.deepEqual(back.weights.get(name)!.data, t.data, name);
});

test('a pruned qwen2 model is padded to one block shape (llama.cpp\'s qwen2 graph has one, with the full head count): zero heads, zero biases, zero neurons; it computes the same, and round-trips byte for byte', async () => {
  // Layer 0 lost a KV group; layer 1 lost half its groups and most neurons; layer 2 its attention; layer 3 everything.
  const m = await qwen2Shaped([[6, 3, 172], [4, 2, 96], [0, 0, 120], [0, 0, 0]]);
  for (const dtype of ['f32', 'q8_0'] as const) {
    const e = await exported(m, dtype, dtype);
    const ffn = dtype === 'f32' ? 172 : 192;
    assert.equal(e.g.metadata.get('general.architecture')!.value, 'qwen2');
    assert.deepEqual(e.back.spec.layers.map((l) => [l.heads, l.kvHeads, l.ffn]), [[8, 4, ffn], [8, 4, ffn], [8, 4, ffn]]);
    const qb = e.back.weights.get(weightName.qBias(1))!.data;
    assert.deepEqual(qb.subarray(0, 32), m.weights.get(weightName.qBias(1))!.data);
    assert.ok(qb.subarray(32).every((x) => x === 0) && e.back.weights.get(weightName.vBias(2))!.data.every((x) => x === 0));
    const served: Weights = dtype === 'f32' ? m.weights : new Map([...m.weights].map(([n, t]) => [n, t.shape.length === 2 ? { shape: t.shape, data: dequantizeMatrix(quantizeMatrix(t.data, t.shape[0]!, t.shape[1]!, 8)) } : t]));
    const ours = referenceForward(m.spec, served, TOKENS);
    const theirs = referenceForward(e.back.spec, e.back.weights, TOKENS);
    assert.ok(ours.every((x, i) => Math.abs(x - theirs[i]!) <= 1e-9 * Math.max(1, Math.abs(x))), dtype);
    const again = join(await tempDir('gguf-rt'), `${dtype}.gguf`);
    await writeGguf(e.back, again, { dtype, tokenizer: e.back.tokenizer, name: dtype });
    assert.ok((await readFile(again)).equals(await readFile(e.path)), dtype);
  }
});

test('a tokenizer.json tokenizer (sentencepiece layout, as our pruned directories carry) is written as a scored vocabulary that encodes the same', async () => {
  const m = await loadStories();
  const spm = m.tokenizer as ScoredVocabSource;
  const hf = scoredVocabToHfTokenizer(spm);
  const asJson: TokenizerSource = { kind: 'tokenizer.json', json: hf.tokenizerJson, config: hf.tokenizerConfig, origin: 'pruned dir' };
  const { back } = await exported({ ...m, tokenizer: asJson }, 'f32');
  assert.equal(back.tokenizer.kind, 'scored-vocab');
  const [a, b] = [createTokenizer(back.tokenizer), createTokenizer(spm)];
  for (const text of ['Once upon a time, there was a little dog.', 'Lily said: "Can I play?"\nTom smiled. 123 ☃ éa']) {
    assert.deepEqual(a.encode(text), b.encode(text), text);
  }
});

test('a byte-level tokenizer.json is written as gpt2 with merges and llama.cpp\'s name for its pre-tokenizer', async () => {
  const m = await loadStories();
  const bytes = Array.from({ length: 256 }, (_, b) => String.fromCharCode(b < 33 ? 256 + b : b)).slice(0, 256);
  const pieces = Array.from({ length: m.spec.vocabSize }, (_, i) => (i < 256 ? bytes[i]! : `t${i}`));
  const source: ByteBpeSource = { kind: 'byte-bpe', pieces, merges: ['t 2'], types: pieces.map(() => 1), bosTokenId: 1, eosTokenIds: [2], preTokenizer: 'llama-bpe', origin: 'synthetic' };
  const { json, config } = byteBpeToTokenizerJson(source);
  const { g, back } = await exported({ ...m, tokenizer: { kind: 'tokenizer.json', json, config, origin: 'dir' } }, 'f32');
  assert.equal(g.metadata.get('tokenizer.ggml.model')!.value, 'gpt2');
  assert.equal(g.metadata.get('tokenizer.ggml.pre')!.value, 'llama-bpe');
  assert.deepEqual(back.tokenizer.kind === 'byte-bpe' && back.tokenizer.merges, ['t 2']);
});

test('bad input gets one clear line: unsupported dtype, q/k/v biases whose full head count is not whole KV groups, a hidden size that is not whole blocks', async () => {
  const m = await shaped([[8, 4, 172]]);
  const p = join(await tempDir('gguf-bad'), 'x.gguf');
  await rejectsWith(writeGguf(m, p, { dtype: 'bf16' as GgufWriteDtype, tokenizer: m.tokenizer }), "'bf16'", 'f32, f16, q8_0, q4_0');
  // hidden 64 / head size 8 = 8 query heads, not a whole number of KV groups of 3.
  const biased = await qwen2Shaped([[6, 2, 172]]);
  await rejectsWith(writeGguf(biased, p, { tokenizer: m.tokenizer }), 'q/k/v biases', 'KV groups of 3', '--format hf');
  const odd: ModelSpec = { ...m.spec, hidden: 40, layers: [{ heads: 5, kvHeads: 5, headDim: 8, ffn: 64 }] };
  await rejectsWith(writeGguf({ spec: odd, weights: randomWeights(odd) }, p, { dtype: 'q4_0', tokenizer: m.tokenizer }), 'multiple of 32', 'F16 or F32');
});

test('the reader refuses an unsupported architecture, inconsistent per-layer arrays and linear-attention layers in one line each', async () => {
  const m = await shaped([[8, 4, 172], [0, 0, 96], [6, 3, 40]]);
  const dir = await tempDir('gguf-bad-read');
  const edits: [string, (md: Map<string, { type: number; value: unknown; itemType?: number }>) => void, string[]][] = [
    ['arch', (md) => md.set('general.architecture', { type: GgufType.STRING, value: 'nemotron_h' }), ["'nemotron_h'", 'llama, deci']],
    ['short', (md) => md.set('deci.feed_forward_length', { type: GgufType.ARRAY, itemType: GgufType.INT32, value: [172, 96] }), ['feed_forward_length has 2 entries for 3 layers']],
    ['negative', (md) => md.set('deci.attention.head_count', { type: GgufType.ARRAY, itemType: GgufType.INT32, value: [8, -1, 6] }), ['head_count of layer 1 is -1']],
    ['linear', (md) => md.set('deci.attention.head_count_kv', { type: GgufType.ARRAY, itemType: GgufType.INT32, value: [4, 0, 0] }), ['layer 2 has 6 query heads and 0 KV heads']],
  ];
  for (const [name, edit, parts] of edits) {
    const c = buildGgufContents(m, { tokenizer: m.tokenizer, name });
    edit(c.metadata as never);
    const path = join(dir, `${name}.gguf`);
    await writeGgufFile(path, c);
    await rejectsWith(readGguf(path), ...parts);
  }
  const k = buildGgufContents(m, { tokenizer: m.tokenizer, name: 'q4k' });
  const down = k.tensors.find((t) => t.name === 'blk.0.ffn_down.weight')!;
  down.type = 12; // Q4_K: the type alone is refused, before its size is looked at
  await writeGgufFile(join(dir, 'q4k.gguf'), k);
  await rejectsWith(readGguf(join(dir, 'q4k.gguf')), 'blk.0.ffn_down.weight has unsupported type Q4_K', 'F32, F16, BF16, Q8_0, Q4_0');
});

test('the chat template goes along into the GGUF and back', async () => {
  const m = await shaped([[8, 4, 172], [0, 0, 96]]);
  const template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}";
  const path = join(await tempDir('gguf-template'), 't.gguf');
  await writeGguf(m, path, { tokenizer: m.tokenizer, chatTemplate: template });
  assert.equal((await readGguf(path)).chatTemplate, template);
});
