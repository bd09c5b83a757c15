/**
 * A GGUF Q8_0 / Q4_0 model served as int8 / int4 runs the file's own blocks, not a re-quantization
 * of their float values: that matters for files made by another quantizer (another scale choice,
 * an importance matrix), whose codes our rounding would not reproduce.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type BlockQuantizedMatrix, holdsExactly, quantizeMatrix } from '../../src/runtime/model/block-quantization.ts';
import { GgmlType, parseGguf } from '../../src/runtime/model/gguf-container.ts';
import { readGguf } from '../../src/runtime/model/gguf-model.ts';
import { writeGguf } from '../../src/runtime/model/gguf-writer.ts';
import { f16ToNumber, numberToF16 } from '../../src/runtime/model/half.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import { weightName } from '../../src/runtime/model/spec.ts';
import { syntheticPresets, syntheticSpec, syntheticVocabulary, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import { buildDecoderGraph } from '../../src/runtime/onnx/decoder-graph.ts';
import { tempDir } from './model-helpers.ts';

const spec = syntheticSpec({ ...syntheticPresets.tiny, tiedEmbeddings: true });

/**
 * Rewrite every Q8_0 / Q4_0 block of a GGUF file as a quantizer with another scale rule would:
 * the scale doubled and the codes halved (rounding half up), so the values change and no block
 * keeps a code at the end of the range, which our quantizer (ggml's reference rule) always puts there.
 */
async function requantizeAsAnotherTool(path: string): Promise<void> {
  const bytes = new Uint8Array(await readFile(path));
  const g = parseGguf(bytes, path);
  for (const t of g.tensors.values()) {
    if (t.type !== GgmlType.Q8_0 && t.type !== GgmlType.Q4_0) continue;
    const size = t.type === GgmlType.Q8_0 ? 34 : 18;
    const count = t.shape.reduce((a, b) => a * b, 1);
    for (let p = t.offset; p < t.offset + (count / 32) * size; p += size) {
      const d = f16ToNumber(bytes[p]! | (bytes[p + 1]! << 8));
      const h = numberToF16(2 * d);
      bytes[p] = h & 0xff;
      bytes[p + 1] = h >> 8;
      for (let j = 0; j < size - 2; j++) {
        const b = bytes[p + 2 + j]!;
        if (t.type === GgmlType.Q8_0) bytes[p + 2 + j] = Math.floor(((b << 24) >> 24) / 2 + 0.5) & 0xff;
        else {
          const half = (nib: number) => Math.floor((nib - 8) / 2 + 0.5) + 8;
          bytes[p + 2 + j] = half(b & 15) | (half(b >> 4) << 4);
        }
      }
    }
  }
  await writeFile(path, bytes);
}

async function anotherToolsFile(dtype: 'q8_0' | 'q4_0'): Promise<LoadedModel> {
  const path = join(await tempDir(`gguf-blocks-${dtype}`), `tiny.${dtype}.gguf`);
  await writeGguf({ spec, weights: syntheticWeights(spec, 7) }, path, { dtype, tokenizer: syntheticVocabulary(spec.vocabSize) });
  await requantizeAsAnotherTool(path);
  return readGguf(path);
}

/** The MatMulNBits code initializers of a graph, as byte strings. */
function graphCodes(model: LoadedModel, bits: 'int8' | 'int4', withFileBlocks: boolean): { codes: Set<string>; counts: { fromFile: number; quantized: number } | undefined } {
  const graph = buildDecoderGraph(model.spec, model.weights, { maxContext: 64, logits: 'last', weights: bits, ...(withFileBlocks && model.fileBlocks && { fileBlocks: model.fileBlocks }) });
  return { codes: new Set(graph.model.externalData.map((e) => Buffer.from(e.data).toString('hex'))), counts: graph.weightBlocks };
}

const hex = (q: BlockQuantizedMatrix) => Buffer.from(q.codes).toString('hex');

describe("a GGUF model's own quantized blocks", () => {
  for (const [dtype, bits] of [['q8_0', 'int8'], ['q4_0', 'int4']] as const) {
    it(`${dtype}: are read without float, in our layout (Q/K rows moved to rotate-half), and hold exactly the float weights read beside them`, async () => {
      const model = await anotherToolsFile(dtype);
      const blocks = model.fileBlocks!;
      // Every projection and the tied head; norms stay float.
      assert.equal(blocks.size, 1 + spec.layers.length * 7);
      for (const [name, q] of blocks) {
        assert.equal(q.bits, bits === 'int8' ? 8 : 4, name);
        assert.ok(holdsExactly(q, model.weights.get(name)!.data), `${name}: the blocks dequantize to the float weights`);
      }
      // The rewritten file is one our rounding would not reproduce (else this test could not fail).
      const down = blocks.get(weightName.down(0))!;
      const w = model.weights.get(weightName.down(0))!;
      assert.notEqual(hex(quantizeMatrix(w.data, w.shape[0]!, w.shape[1]!, down.bits)), hex(down));
    });

    it(`${dtype}: served as ${bits}, every matrix runs the file's codes; re-quantizing would have changed them`, async () => {
      const model = await anotherToolsFile(dtype);
      const served = graphCodes(model, bits, true);
      // qkv (one stacked matrix), o, gate, up, down per layer, and the head.
      assert.deepEqual(served.counts, { fromFile: spec.layers.length * 5 + 1, quantized: 0 });
      for (const name of [weightName.down(1), weightName.gate(2), weightName.up(3), weightName.o(0), weightName.embed]) {
        assert.ok(served.codes.has(hex(model.fileBlocks!.get(name)!)), `${name}: the graph holds the file's codes`);
      }
      const requantized = graphCodes(model, bits, false);
      assert.deepEqual(requantized.counts, { fromFile: 0, quantized: spec.layers.length * 5 + 1 });
      assert.ok(!requantized.codes.has(hex(model.fileBlocks!.get(weightName.down(1))!)));
    });
  }

  it('a weight changed since loading (pruned, fine-tuned) is quantized afresh; the others still run the file', async () => {
    const model = await anotherToolsFile('q8_0');
    const weights = new Map(model.weights);
    const down = weights.get(weightName.down(2))!;
    weights.set(weightName.down(2), { shape: down.shape, data: down.data.map((x) => x * 1.01) });
    const { counts } = graphCodes({ ...model, weights }, 'int8', true);
    assert.deepEqual(counts, { fromFile: spec.layers.length * 5, quantized: 1 });
  });

  it('Q8_0 blocks served as int4 (another bit width) are quantized from the float weights', async () => {
    const model = await anotherToolsFile('q8_0');
    assert.deepEqual(graphCodes(model, 'int4', true).counts, { fromFile: 0, quantized: spec.layers.length * 5 + 1 });
  });
});
