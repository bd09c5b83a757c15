/**
 * Exported GGUF files run in the real llama.cpp (node-llama-cpp's prebuilt CPU binary, installed on
 * demand into .peer/ from the npm registry as the peer benchmark does): MoP variants of the bundled
 * model at 20% (uniform: `llama`), 40% and 50% (`deci`), a sublayer prune (attention-free layers),
 * hand-cut shapes with an MLP-free layer and an attention-free first layer, and the model with q/k/v
 * biases (`qwen2`), whole and pruned by MoP to 40% (written padded to one block shape, as llama.cpp's
 * qwen2 graph needs), each in F32, Q8_0 and Q4_0. Each file is read back (our reader dequantizes Q8_0 / Q4_0 exactly) and run here:
 * - F32: by our engine (ModelSession); llama.cpp, fed our greedy continuation, must pick our token at
 *   every one of the 64 steps, logits within 1e-3.
 * - Q8_0 / Q4_0: llama.cpp's CPU kernels round every activation vector to Q8_0 blocks before it
 *   meets a quantized weight (ggml's q8_0 · q8_0 and q4_0 · q8_0 dot products), which moves this tiny
 *   model's logits by a few tenths against exact arithmetic on the same weights. So the oracle is the
 *   float64 reference forward pass on the dequantized weights with that same rounding (our Q8_0
 *   quantizer is ggml's arithmetic), and most files then agree to float32 precision. Where one
 *   activation sits on a rounding tie that ggml's float32 SIMD resolves the other way, that one code
 *   step persists through the KV cache and moves later logits by tenths, hence the 0.75 bound; the
 *   greedy pick must agree at every step whose top-2 margin exceeds twice the bound. A wrong file
 *   (layout, shapes, padding, an MLP-free layer written with feed_forward_length 0) is off by whole
 *   logits.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_PEER_DIR, ensurePeer, loadPeer, type NlcControlledInput, type NlcLlama, PEER_VERSION } from '../../scripts/lib/node-llama-cpp.ts';
import { runMop } from '../../src/mop/mop.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { dequantizeQ8_0, quantizeQ8_0 } from '../../src/runtime/model/ggml-blocks.ts';
import { readGguf } from '../../src/runtime/model/gguf-model.ts';
import { writeGguf } from '../../src/runtime/model/gguf-writer.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import { type ModelSpec, weightName } from '../../src/runtime/model/spec.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { scoredVocabToHfTokenizer } from '../../src/runtime/tokenizer/from-scored-vocab.ts';
import type { ScoredVocabSource, TokenizerSource } from '../../src/runtime/tokenizer/types.ts';
import { argmax, maxAbsDiff } from '../helpers/logits.ts';
import { referenceForward } from '../helpers/reference-forward.ts';
import { bundled } from '../mop/helpers.ts';
import { tempDir } from './model-helpers.ts';

const STEPS = 64;
const PROMPT = 'Once upon a time, there was a little girl named Lily.';
/** Largest |logit difference| allowed (see the file comment). */
const TOLERANCE: Record<'f32' | 'q8_0' | 'q4_0', number> = { f32: 1e-3, q8_0: 0.75, q4_0: 0.75 };

/** A vector as llama.cpp multiplies it with a Q8_0 / Q4_0 matrix: rounded to Q8_0 blocks. */
function ggmlActivationRounding(v: Float64Array): Float64Array {
  return Float64Array.from(dequantizeQ8_0(quantizeQ8_0(Float32Array.from(v)), v.length));
}

/** `model` with sub-blocks removed: `attention` / `mlp` list the layers that lose them. */
function cut(model: { spec: ModelSpec; weights: Weights }, o: { attention?: number[]; mlp?: number[] }): { spec: ModelSpec; weights: Weights } {
  const layers = model.spec.layers.map((l, i) => ({ ...l, ...(o.attention?.includes(i) && { heads: 0, kvHeads: 0 }), ...(o.mlp?.includes(i) && { ffn: 0 }) }));
  const drop = (n: string) =>
    (o.attention ?? []).some((i) => [weightName.attnNorm(i), weightName.q(i), weightName.k(i), weightName.v(i), weightName.o(i)].includes(n)) ||
    (o.mlp ?? []).some((i) => [weightName.mlpNorm(i), weightName.gate(i), weightName.up(i), weightName.down(i)].includes(n));
  return { spec: { ...model.spec, layers }, weights: new Map([...model.weights].filter(([n]) => !drop(n))) };
}

/** `model` as a qwen2 model: the same weights plus small random q/k/v biases (seeded). */
function withBiases(model: { spec: ModelSpec; weights: Weights }): { spec: ModelSpec; weights: Weights } {
  const spec: ModelSpec = { ...model.spec, family: 'qwen2', attentionBias: true };
  const weights = new Map(model.weights);
  let seed = 7;
  const next = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.2;
  spec.layers.forEach((l, i) => {
    weights.set(weightName.qBias(i), { shape: [l.heads * l.headDim], data: Float32Array.from({ length: l.heads * l.headDim }, next) });
    weights.set(weightName.kBias(i), { shape: [l.kvHeads * l.headDim], data: Float32Array.from({ length: l.kvHeads * l.headDim }, next) });
    weights.set(weightName.vBias(i), { shape: [l.kvHeads * l.headDim], data: Float32Array.from({ length: l.kvHeads * l.headDim }, next) });
  });
  return { spec, weights };
}

/** Our engine (float32) on the file read back: greedy tokens and the logits each was picked from. */
async function oursGreedy(m: LoadedModel, prompt: number[]): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  const session = await ModelSession.create(m.spec, m.weights, { maxBatch: 1, maxContext: prompt.length + STEPS + 1, threads: 1 });
  try {
    const logits = [await session.prefill(0, prompt)];
    const tokens = [argmax(logits[0]!)];
    while (tokens.length < STEPS) {
      const [next] = await session.decode([{ slot: 0, token: tokens.at(-1)! }]);
      logits.push(next!);
      tokens.push(argmax(next!));
    }
    return { tokens, logits };
  } finally {
    await session.release();
  }
}

/** llama.cpp fed the prompt and `tokens` as one batch: its logits after the prompt and after each token but the last. */
async function llamaLogits(llama: NlcLlama, path: string, prompt: number[], tokens: number[], vocab: number): Promise<Float32Array[]> {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  try {
    const context = await model.createContext({
      contextSize: 256,
      batchSize: 256,
      threads: 2,
      sequences: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
    } as never);
    try {
      const want = { generateNext: { logits: true } };
      const input: NlcControlledInput[] = [...prompt.slice(0, -1), [prompt.at(-1)!, want], ...tokens.slice(0, -1).map((t): NlcControlledInput => [t, want])];
      return (await context.getSequence().controlledEvaluate(input)).flatMap((o) => {
        if (!o?.next.logits) return [];
        const row = new Float32Array(vocab).fill(-Infinity);
        for (const [id, v] of o.next.logits) row[id] = v;
        return [row];
      });
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

/** The float64 reference on the dequantized weights, with llama.cpp's activation rounding: logits after the prompt and each token. */
function referenceRun(m: LoadedModel, prompt: number[], tokens: number[]): Float32Array[] {
  const V = m.spec.vocabSize;
  const all = referenceForward(m.spec, m.weights, [...prompt, ...tokens.slice(0, -1)], ggmlActivationRounding);
  return tokens.map((_, k) => all.slice((prompt.length - 1 + k) * V, (prompt.length + k) * V));
}

describe('exported GGUF files in llama.cpp', () => {
  let llama: NlcLlama;
  let variants: [string, { spec: ModelSpec; weights: Weights }][];
  let base: LoadedModel;
  let prompt: number[];

  before(async () => {
    let entry: string;
    try {
      entry = ensurePeer(DEFAULT_PEER_DIR, PEER_VERSION, (line) => process.stderr.write(`[llama.cpp] ${line}\n`));
    } catch (e) {
      throw new Error(
        `llama.cpp is needed to check exported GGUF files and could not be installed: ${(e as Error).message}. ` +
          `This test installs node-llama-cpp@${PEER_VERSION} into ${DEFAULT_PEER_DIR}/ from the npm registry this machine is configured for (npm config get registry) once; later runs reuse it.`,
      );
    }
    llama = await loadPeer(entry, 2);
    const { model, tokenizer, calibration } = await bundled();
    base = model;
    prompt = [model.spec.bosTokenId, ...tokenizer.encode(PROMPT, { addBos: false })];
    const mop = async (target: number, depthUnit: 'layer' | 'sublayer' = 'layer') => (await runMop(model, { target, calibration, depthUnit })).model;
    variants = [
      ['MoP 20%', await mop(0.2)],
      ['MoP 40%', await mop(0.4)],
      ['MoP 50%', await mop(0.5)],
      ['MoP 50%, sublayer depth (attention-free layers)', await mop(0.5, 'sublayer')],
      ['an MLP-free layer', cut(model, { mlp: [2] })],
      ['an attention-free first layer and an empty layer', cut(model, { attention: [0, 3], mlp: [3] })],
      ['qwen2 (q/k/v biases)', withBiases(model)],
      ['qwen2, MoP 40% (written padded to one block shape)', (await runMop({ ...model, ...withBiases(model) }, { target: 0.4, calibration })).model],
    ];
  });
  after(async () => llama?.dispose());

  test('llama.cpp tokenizes the exported vocabulary as we do, from the llama2.c vocabulary and from the tokenizer.json a pruned directory carries', async () => {
    const dir = await tempDir('llamacpp-tok');
    const hf = scoredVocabToHfTokenizer(base.tokenizer as ScoredVocabSource);
    const sources: [string, TokenizerSource][] = [
      ['llama2c', base.tokenizer],
      ['tokenizer-json', { kind: 'tokenizer.json', json: hf.tokenizerJson, config: hf.tokenizerConfig, origin: 'pruned directory' }],
    ];
    for (const [name, tokenizer] of sources) {
      const path = join(dir, `${name}.gguf`);
      await writeGguf(base, path, { tokenizer });
      const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
      try {
        for (const text of [PROMPT, 'Tom said: "Hi!"\nThey ran to the park, 3 times.']) {
          assert.deepEqual(model.tokenize(text), createTokenizer(base.tokenizer).encode(text, { addBos: false }), `${name}: ${text}`);
        }
      } finally {
        await model.dispose();
      }
    }
  });

  for (const quant of ['f32', 'q8_0', 'q4_0'] as const) {
    const oracle = quant === 'f32' ? 'our engine' : 'the reference pass (with llama.cpp\'s activation rounding)';
    test(`every variant in ${quant}: llama.cpp's greedy picks equal those of ${oracle} at each of ${STEPS} steps, logits within ${TOLERANCE[quant]}`, async () => {
      const dir = await tempDir(`llamacpp-${quant}`);
      for (const [k, [name, variant]] of variants.entries()) {
        const path = join(dir, `${k}.${quant}.gguf`);
        await writeGguf(variant, path, { dtype: quant, tokenizer: base.tokenizer, name });
        const back = await readGguf(path);
        const ours = await oursGreedy(back, prompt);
        const theirs = await llamaLogits(llama, path, prompt, ours.tokens, back.spec.vocabSize);
        const expected = quant === 'f32' ? ours.logits : referenceRun(back, prompt, ours.tokens);
        assert.equal(theirs.length, STEPS, name);
        theirs.forEach((row, i) => {
          const want = expected[i]!;
          const [first, second] = [...want].sort((x, y) => y - x);
          if (first! - second! > 2 * TOLERANCE[quant]) assert.equal(argmax(row), argmax(want), `${name} (${quant}): llama.cpp's greedy pick after ${i} steps differs from ${oracle}'s`);
        });
        const worst = Math.max(...theirs.map((row, i) => maxAbsDiff(row, expected[i]!)));
        assert.ok(worst <= TOLERANCE[quant], `${name} (${quant}): logits differ by ${worst} > ${TOLERANCE[quant]}`);
      }
    });
  }
});
