import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { GgmlType, parseGguf, readGguf, writeGguf } from '../../src/runtime/model/gguf.ts';
import { weightName } from '../../src/runtime/model/spec.ts';
import { syntheticPresets, syntheticSpec, syntheticVocabulary, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import { dequantizeMatrix, quantizeMatrix } from '../../src/runtime/onnx/block-quantization.ts';
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

test('writeGguf q8_0 keeps a matrix whose rows are not whole blocks in F32, as llama.cpp does', async () => {
  const m = await loadStories(); // ffn 172: ffn_down rows are 172 wide
  const path = join(await tempDir('gguf-q8-ragged'), 'stories.q8_0.gguf');
  await writeGguf(m, path, { dtype: 'q8_0', tokenizer: m.tokenizer as never });
  const g = parseGguf(new Uint8Array(await readFile(path)), path);
  assert.equal(g.tensors.get('blk.0.ffn_down.weight')!.type, GgmlType.F32);
  assert.equal(g.tensors.get('blk.0.ffn_gate.weight')!.type, GgmlType.Q8_0);
  const back = await readGguf(path);
  assert.deepEqual(back.weights.get(weightName.down(0))!.data, m.weights.get(weightName.down(0))!.data);
});
