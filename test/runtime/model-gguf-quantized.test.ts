import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { GgmlType, parseGguf } from '../../src/runtime/model/gguf-container.ts';
import { readGguf } from '../../src/runtime/model/gguf-model.ts';
import { writeGguf } from '../../src/runtime/model/gguf-writer.ts';
import { weightName } from '../../src/runtime/model/spec.ts';
import { syntheticPresets, syntheticSpec, syntheticVocabulary, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import { dequantizeMatrix, quantizeMatrix } from '../../src/runtime/model/block-quantization.ts';
import { numberToF16 } from '../../src/runtime/model/half.ts';
import { loadStories, tempDir } from './model-helpers.ts';

/** The float values a [rows, k] weight has after our int8 / int4 quantization (what the graph runs). */
function asServed(w: { shape: number[]; data: Float32Array }, bits: 4 | 8): Float32Array {
  return dequantizeMatrix(quantizeMatrix(w.data, w.shape[0]!, w.shape[1]!, bits));
}

for (const [dtype, bits, type] of [['q8_0', 8, GgmlType.Q8_0], ['q4_0', 4, GgmlType.Q4_0]] as const) {
  test(`writeGguf ${dtype} holds exactly the blocks our ${bits === 8 ? 'int8' : 'int4'} graph runs, and reads back to those values`, async () => {
    const spec = syntheticSpec(syntheticPresets.tiny);
    const weights = syntheticWeights(spec, 2);
    const path = join(await tempDir(`gguf-${dtype}`), `tiny.${dtype}.gguf`);
    await writeGguf({ spec, weights }, path, { dtype, tokenizer: syntheticVocabulary(spec.vocabSize) });
    const g = parseGguf(new Uint8Array(await readFile(path)), path);
    assert.equal(g.tensors.get('blk.0.ffn_down.weight')!.type, type);
    assert.equal(g.tensors.get('blk.0.attn_norm.weight')!.type, GgmlType.F32);
    assert.equal(g.metadata.get('general.file_type')!.value, dtype === 'q8_0' ? 7 : 2);
    const back = await readGguf(path);
    // Q/K rows are permuted for llama.cpp's RoPE layout and back; blocks run along rows, so they survive.
    for (const name of [weightName.down(0), weightName.up(1), weightName.q(2), weightName.k(3), weightName.embed]) {
      assert.deepEqual(back.weights.get(name)!.data, asServed(weights.get(name)!, bits), name);
    }
  });
}

test('writeGguf q8_0 zero-pads a width that is not whole blocks (ffn 172 → 192) into exactly our int8 blocks of the real rows', async () => {
  const m = await loadStories(); // ffn 172: ffn_down rows are 172 wide
  const path = join(await tempDir('gguf-q8-ragged'), 'stories.q8_0.gguf');
  await writeGguf(m, path, { dtype: 'q8_0', tokenizer: m.tokenizer as never });
  const g = parseGguf(new Uint8Array(await readFile(path)), path);
  assert.equal(g.tensors.get('blk.0.ffn_down.weight')!.type, GgmlType.Q8_0);
  assert.deepEqual(g.tensors.get('blk.0.ffn_down.weight')!.shape, [64, 192]);
  const back = await readGguf(path);
  const down = back.weights.get(weightName.down(0))!.data;
  const served = asServed(m.weights.get(weightName.down(0))!, 8);
  for (let r = 0; r < 64; r++) {
    assert.deepEqual(down.subarray(r * 192, r * 192 + 172), served.subarray(r * 172, (r + 1) * 172));
    assert.ok(down.subarray(r * 192 + 172, (r + 1) * 192).every((x) => x === 0));
  }
});

/** A Q8_0 / Q4_0 tensor's blocks as stored in the file, in our codes' layout (ggml 32-value blocks). */
function fileBlocks(bytes: Uint8Array, type: number, count: number): { codes: number[]; scales: number[] } {
  const codes: number[] = [];
  const scales: number[] = [];
  const size = type === GgmlType.Q8_0 ? 34 : 18;
  for (let p = 0; p < (count / 32) * size; p += size) {
    scales.push(new DataView(bytes.buffer, bytes.byteOffset + p, 2).getUint16(0, true));
    if (type === GgmlType.Q8_0) for (let j = 0; j < 32; j++) codes.push(((bytes[p + 2 + j]! << 24) >> 24) + 128);
    else {
      const q = Array.from({ length: 32 }, (_, j) => (j < 16 ? bytes[p + 2 + j]! & 15 : bytes[p + 2 + j - 16]! >> 4));
      for (let j = 0; j < 32; j += 2) codes.push(q[j]! | (q[j + 1]! << 4));
    }
  }
  return { codes, scales };
}

for (const [dtype, bits, type] of [['q8_0', 8, GgmlType.Q8_0], ['q4_0', 4, GgmlType.Q4_0]] as const) {
  test(`a GGUF ${dtype} model served as ${bits === 8 ? 'int8' : 'int4'} runs exactly the file's blocks: re-quantizing its values reproduces every code and scale`, async () => {
    const spec = syntheticSpec(syntheticPresets.tiny);
    const path = join(await tempDir(`gguf-${dtype}-exact`), `tiny.${dtype}.gguf`);
    await writeGguf({ spec, weights: syntheticWeights(spec, 4) }, path, { dtype, tokenizer: syntheticVocabulary(spec.vocabSize) });
    const g = parseGguf(new Uint8Array(await readFile(path)), path);
    const back = await readGguf(path);
    for (const [gguf, name] of [['blk.0.ffn_down.weight', weightName.down(0)], ['blk.2.ffn_gate.weight', weightName.gate(2)], ['blk.1.attn_v.weight', weightName.v(1)], ['token_embd.weight', weightName.embed]] as const) {
      const info = g.tensors.get(gguf)!;
      assert.equal(info.type, type, gguf);
      const n = info.shape.reduce((a, b) => a * b, 1);
      const file = fileBlocks(g.bytes.subarray(info.offset), type, n);
      const w = back.weights.get(name)!;
      const q = quantizeMatrix(w.data, w.shape[0]!, w.shape[1]!, bits);
      assert.deepEqual(Array.from(q.codes), file.codes, `${gguf} codes`);
      assert.deepEqual(Array.from(q.scales, (x) => numberToF16(x)), file.scales, `${gguf} scales`);
    }
  });
}
