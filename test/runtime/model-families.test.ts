import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openMaskedForward } from '../../src/runtime/calibration/ort-masked-forward.ts';
import { targetFor } from '../../src/runtime/device/device.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { dequantizeMatrix, quantizeMatrix } from '../../src/runtime/model/block-quantization.ts';
import { GgmlType, GgufType } from '../../src/runtime/model/gguf-container.ts';
import { buildGgufContents, type GgufContents, writeGgufFile } from '../../src/runtime/model/gguf-writer.ts';
import { readHfDirectory, writeHfDirectory } from '../../src/runtime/model/hf.ts';
import { loadModel } from '../../src/runtime/model/load.ts';
import { writeSafetensors } from '../../src/runtime/model/safetensors.ts';
import { ModelFormatError, type ModelSpec, weightName } from '../../src/runtime/model/spec.ts';
import { syntheticVocabulary, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Tensor, Weights } from '../../src/runtime/model/tensor.ts';
import { fullPlan } from '../../src/mop/pruning-plan.ts';
import { referenceForward } from '../helpers/reference-forward.ts';
import { argmax, maxAbsDiff } from '../helpers/logits.ts';
import { assertSameWeights, minimalTokenizerJson, tempDir } from './model-helpers.ts';

/**
 * Checkpoints of the other LLaMA-family model types, built here as transformers writes them
 * (config.json + model.safetensors), load and compute what the float64 reference computes:
 * Qwen2 (q/k/v biases, tied or untied head) and Mistral (full attention when its sliding window
 * covers the context). What would compute differently is refused in one line naming it.
 */
const TOL = 1e-3;
const PROMPT = [1, 5, 17, 42, 8, 3, 60, 61];

/** A tiny config of `family` as transformers writes it (head size 8: GQA pads it to 16). */
function hfConfig(family: 'qwen2' | 'mistral', extra: Record<string, unknown> = {}): Record<string, unknown> {
  const common = {
    vocab_size: 97,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    hidden_act: 'silu',
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  };
  return family === 'qwen2'
    ? { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', ...common, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 32768, max_window_layers: 28, ...extra }
    : { architectures: ['MistralForCausalLM'], model_type: 'mistral', ...common, tie_word_embeddings: false, sliding_window: null, head_dim: 8, ...extra };
}

/** The spec the config describes, with random weights: biases of both signs, larger than the weights (Qwen2's are). */
function weightsFor(spec: ModelSpec, seed: number): Weights {
  const w = syntheticWeights(spec, seed);
  for (const [name, t] of w) if (name.endsWith('.bias')) t.data.forEach((_, i) => (t.data[i] = Math.sin(i * 1.7 + seed) * 0.8));
  return w;
}

/** Write config.json, model.safetensors (shuffled names, as real shards are) and a one-token tokenizer.json. */
async function writeCheckpoint(config: Record<string, unknown>, weights: Weights): Promise<string> {
  const dir = await tempDir('family');
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  await writeSafetensors(join(dir, 'model.safetensors'), [...weights].reverse());
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(minimalTokenizerJson));
  return dir;
}

function specOf(config: Record<string, unknown>): ModelSpec {
  const layer = { heads: 4, kvHeads: 2, headDim: 8, ffn: 48 };
  const qwen2 = config['model_type'] === 'qwen2';
  return {
    architecture: 'llama',
    family: qwen2 ? 'qwen2' : 'mistral',
    ...(qwen2 && { attentionBias: true }),
    vocabSize: 97,
    hidden: 32,
    layers: [layer, { ...layer }],
    normEps: 1e-6,
    rope: { theta: 1000000 },
    tiedEmbeddings: config['tie_word_embeddings'] === true,
    bosTokenId: 1,
    eosTokenIds: [2],
    maxContext: 64,
  };
}

/** Prefill and 8 greedy steps through the serving graph, each step against the reference. */
async function assertServingMatchesReference(spec: ModelSpec, weights: Weights): Promise<void> {
  const session = await ModelSession.create(spec, weights, { maxBatch: 1, maxContext: 32, threads: 1 });
  try {
    const tokens = [...PROMPT];
    let logits = await session.prefill(0, tokens);
    for (let step = 0; step < 8; step++) {
      const ref = referenceForward(spec, weights, tokens).subarray((tokens.length - 1) * spec.vocabSize);
      assert.ok(maxAbsDiff(logits, ref) <= TOL, `step ${step}: max |Δlogit| ${maxAbsDiff(logits, ref)}`);
      tokens.push(argmax(ref));
      [logits] = (await session.decode([{ slot: 0, token: tokens.at(-1)! }])) as [Float32Array];
    }
  } finally {
    await session.release();
  }
}

/** The calibration graph (both attention kernels) over the whole prompt against the reference. */
async function assertCalibrationMatchesReference(spec: ModelSpec, weights: Weights): Promise<void> {
  const ref = referenceForward(spec, weights, PROMPT);
  for (const attention of ['gqa', 'plain'] as const) {
    const f = await openMaskedForward(spec, weights, { maxSeqLen: PROMPT.length, threads: 1, attention });
    const out = (await f.run({ rows: 1, seqLen: PROMPT.length, ids: Int32Array.from(PROMPT) }, fullPlan(spec), { logits: true })).logits!;
    await f.release();
    assert.ok(maxAbsDiff(out, ref) <= TOL, `calibration graph (${attention}): max |Δlogit| ${maxAbsDiff(out, ref)}`);
  }
}

async function rejectsNaming(config: Record<string, unknown>, ...parts: string[]): Promise<void> {
  const spec = specOf(hfConfig('mistral'));
  const dir = await writeCheckpoint(config, weightsFor(spec, 1));
  await assert.rejects(loadModel(dir), (e: Error) => {
    assert.ok(e instanceof ModelFormatError, `${e.name}: ${e.message}`);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message should name ${p}: ${e.message}`);
    return true;
  });
}

describe('Qwen2 checkpoints (q/k/v biases)', () => {
  for (const tied of [true, false]) {
    it(`${tied ? 'tied' : 'untied'} head: loads with its biases and serves what the reference computes`, async () => {
      const config = hfConfig('qwen2', { tie_word_embeddings: tied });
      const spec = specOf(config);
      const weights = weightsFor(spec, tied ? 3 : 4);
      assert.ok(weights.has('model.layers.1.self_attn.k_proj.bias') && (tied ? !weights.has(weightName.lmHead) : weights.has(weightName.lmHead)));
      const model = await loadModel(await writeCheckpoint(config, weights));
      assert.deepEqual(model.spec, spec);
      assertSameWeights(model.weights, weights);
      await assertServingMatchesReference(model.spec, model.weights);
      await assertCalibrationMatchesReference(model.spec, model.weights);
    });
  }

  it('int8 weights: the bias is added after MatMulNBits (matches the reference of the dequantized weights)', async () => {
    const spec = specOf(hfConfig('qwen2'));
    const weights = weightsFor(spec, 5);
    // Round every projection through its int8 blocks: then only the activations' int8 rounding differs.
    const rounded: Weights = new Map(weights);
    for (const [name, t] of weights) {
      if (t.shape.length === 2 && name !== weightName.embed) rounded.set(name, { shape: t.shape, data: dequantizeMatrix(quantizeMatrix(t.data, t.shape[0]!, t.shape[1]!, 8, 32)) });
    }
    const session = await ModelSession.create(spec, rounded, { maxBatch: 1, maxContext: 32, threads: 1, target: targetFor('cpu', 'int8') });
    const logits = await session.prefill(0, PROMPT);
    await session.release();
    const ref = referenceForward(spec, rounded, PROMPT).subarray((PROMPT.length - 1) * spec.vocabSize);
    // Without the bias the logits move by more than 1 on this model; int8 activations move them by ~0.05.
    assert.ok(maxAbsDiff(logits, ref) <= 0.2, `int8: max |Δlogit| ${maxAbsDiff(logits, ref)}`);
  });

  it('float16 graph (the GPU dtype, on the CPU provider): the bias is added in float16 too', async () => {
    const spec = specOf(hfConfig('qwen2'));
    const weights = weightsFor(spec, 13);
    const session = await ModelSession.create(spec, weights, { maxBatch: 1, maxContext: 32, threads: 1, target: { device: 'cpu', dtype: 'float16' } });
    const logits = await session.prefill(0, PROMPT);
    await session.release();
    const ref = referenceForward(spec, weights, PROMPT).subarray((PROMPT.length - 1) * spec.vocabSize);
    assert.ok(maxAbsDiff(logits, ref) <= 0.1, `float16: max |Δlogit| ${maxAbsDiff(logits, ref)}`);
  });

  it('written back as a Qwen2 directory: model_type qwen2, its biases, the same model', async () => {
    const config = hfConfig('qwen2', { tie_word_embeddings: false });
    const spec = specOf(config);
    const weights = weightsFor(spec, 6);
    const dir = await tempDir('qwen2-out');
    await writeHfDirectory({ spec, weights }, dir, { tokenizerJson: minimalTokenizerJson });
    const written = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(written['model_type'], 'qwen2');
    assert.deepEqual(written['architectures'], ['Qwen2ForCausalLM']);
    assert.equal(written['use_sliding_window'], false);
    assert.equal(written['layer_shapes'], undefined);
    const back = await readHfDirectory(dir);
    assert.deepEqual(back.spec, spec);
    assertSameWeights(back.weights, weights);
  });

  it('a checkpoint missing a bias is refused naming the tensor', async () => {
    const spec = specOf(hfConfig('qwen2'));
    const weights = weightsFor(spec, 7);
    weights.delete(weightName.vBias(1));
    await assert.rejects(loadModel(await writeCheckpoint(hfConfig('qwen2'), weights)), /missing tensor model\.layers\.1\.self_attn\.v_proj\.bias/);
  });
});

describe('Mistral checkpoints', () => {
  it('sliding_window null: loads and serves what the reference computes', async () => {
    const config = hfConfig('mistral');
    const spec = specOf(config);
    const model = await loadModel(await writeCheckpoint(config, weightsFor(spec, 8)));
    assert.deepEqual(model.spec, spec);
    await assertServingMatchesReference(model.spec, model.weights);
    const dir = await tempDir('mistral-out');
    await writeHfDirectory(model, dir, { tokenizerJson: minimalTokenizerJson });
    const written = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(written['model_type'], 'mistral');
    assert.deepEqual(written['architectures'], ['MistralForCausalLM']);
  });

  it('a sliding window that covers the whole context is full attention: accepted', async () => {
    const config = hfConfig('mistral', { sliding_window: 64 });
    const model = await loadModel(await writeCheckpoint(config, weightsFor(specOf(config), 9)));
    assert.equal(model.spec.family, 'mistral');
  });
});

/**
 * A qwen2 GGUF laid out as llama.cpp's convert_hf_to_gguf.py writes one: `qwen2.*` keys, the
 * llama tensor names plus attn_{q,k,v}.bias, and Q/K rows as Hugging Face has them (that
 * architecture runs NEOX RoPE, so nothing is permuted). Built from our llama export of the same
 * weights without the biases, renamed.
 */
function qwen2Gguf(spec: ModelSpec, weights: Weights): GgufContents {
  const { family: _f, attentionBias: _b, ...llamaSpec } = spec;
  const plain = new Map([...weights].filter(([n]) => !n.endsWith('.bias')));
  const c = buildGgufContents({ spec: llamaSpec, weights: plain }, { tokenizer: syntheticVocabulary(spec.vocabSize), name: 'tiny-qwen2' });
  const metadata = new Map([...c.metadata].map(([k, v]) => [k.replace(/^llama\./, 'qwen2.'), v]));
  metadata.set('general.architecture', { type: GgufType.STRING, value: 'qwen2' });
  const f32 = (t: Tensor) => ({ shape: [...t.shape], type: GgmlType.F32, data: new Uint8Array(t.data.slice().buffer) });
  const tensors = c.tensors.map((t) => {
    const m = /^blk\.(\d+)\.attn_([qk])\.weight$/.exec(t.name);
    return m ? { name: t.name, ...f32(weights.get(m[2] === 'q' ? weightName.q(Number(m[1])) : weightName.k(Number(m[1])))!) } : t;
  });
  spec.layers.forEach((_, i) => {
    for (const [p, name] of [['q', weightName.qBias(i)], ['k', weightName.kBias(i)], ['v', weightName.vBias(i)]] as const) tensors.push({ name: `blk.${i}.attn_${p}.bias`, ...f32(weights.get(name)!) });
  });
  return { metadata, tensors };
}

describe('GGUF: qwen2 and the llama files Mistral ships', () => {
  it('a qwen2 GGUF as llama.cpp\'s converter writes it (q/k/v biases, rows not permuted) reads back exactly and serves what the reference computes', async () => {
    const spec = specOf(hfConfig('qwen2', { tie_word_embeddings: false }));
    const weights = weightsFor(spec, 10);
    const path = join(await tempDir('qwen2-gguf'), 'tiny-qwen2.gguf');
    await writeGgufFile(path, qwen2Gguf(spec, weights));
    const model = await loadModel(path);
    assert.deepEqual(model.spec, spec);
    assertSameWeights(model.weights, weights);
    await assertServingMatchesReference(model.spec, model.weights);
  });

  it('a Mistral-style llama GGUF (head size from key_length, not hidden / heads; no vocab_size key) serves what the reference computes', async () => {
    const layer = { heads: 4, kvHeads: 1, headDim: 16, ffn: 48 };
    const spec: ModelSpec = { ...specOf(hfConfig('mistral')), layers: [layer, { ...layer }] };
    delete spec.family;
    const weights = weightsFor(spec, 12);
    const path = join(await tempDir('mistral-gguf'), 'tiny-mistral.gguf');
    const contents = buildGgufContents({ spec, weights }, { tokenizer: syntheticVocabulary(spec.vocabSize), name: 'tiny-mistral' });
    contents.metadata.delete('llama.vocab_size');
    await writeGgufFile(path, contents);
    const model = await loadModel(path);
    assert.deepEqual(model.spec, spec);
    await assertServingMatchesReference(model.spec, model.weights);
  });
});

describe('what this runtime does not compute is refused in one line naming it', () => {
  it('a sliding window shorter than the context', () => rejectsNaming(hfConfig('mistral', { sliding_window: 16 }), 'sliding_window 16', 'max_position_embeddings 64', 'sliding-window attention'));
  it('qwen2 with use_sliding_window', () => rejectsNaming(hfConfig('qwen2', { use_sliding_window: true, sliding_window: 16 }), 'sliding-window attention'));
  it('mixture-of-experts (mixtral)', () => rejectsNaming({ ...hfConfig('mistral'), architectures: ['MixtralForCausalLM'], model_type: 'mixtral' }, 'MixtralForCausalLM', 'supported'));
  it('experts in a mistral config', () => rejectsNaming(hfConfig('mistral', { num_local_experts: 8 }), 'num_local_experts', 'mixture-of-experts'));
  it('an unknown model_type', () => rejectsNaming({ ...hfConfig('mistral'), architectures: undefined, model_type: 'gemma' }, "model_type 'gemma'", 'llama, mistral, qwen2'));
  it('llama with attention biases', () => rejectsNaming({ ...hfConfig('mistral'), architectures: ['LlamaForCausalLM'], model_type: 'llama', attention_bias: true }, 'attention_bias'));
});
