import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { roundToBf16, roundToF16 } from '../../src/runtime/model/half.ts';
import { readHfDirectory, writeHfDirectory } from '../../src/runtime/model/hf.ts';
import { writeSafetensors } from '../../src/runtime/model/safetensors.ts';
import { ModelFormatError, expectedWeightShapes, weightName } from '../../src/runtime/model/spec.ts';
import type { ModelSpec } from '../../src/runtime/model/spec.ts';
import { assertSameWeights, loadStories, randomWeights, minimalTokenizerJson, tempDir } from './model-helpers.ts';

async function rejectsWith(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof ModelFormatError, `ModelFormatError expected, got ${e.name}: ${e.message}`);
    for (const part of parts) assert.ok(e.message.includes(part), `message should name ${part}: ${e.message}`);
    return true;
  });
}

async function editJson(path: string, edit: (j: Record<string, unknown>) => void): Promise<void> {
  const j = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  edit(j);
  await writeFile(path, JSON.stringify(j));
}

test('stories260K written as an HF directory reads back with identical spec and weights', async () => {
  const m = await loadStories();
  const dir = await tempDir('hf-rt');
  const tokenizerConfig = { chat_template: '{{ messages }}', bos_token: '<s>' };
  await writeHfDirectory(m, dir, { tokenizerJson: minimalTokenizerJson, tokenizerConfig });
  const back = await readHfDirectory(dir);
  assert.equal(back.format, 'hf');
  assert.deepEqual(back.spec, m.spec);
  assertSameWeights(back.weights, m.weights);
  assert.deepEqual(back.tokenizer, { kind: 'tokenizer.json', json: minimalTokenizerJson, config: tokenizerConfig, origin: join(dir, 'tokenizer.json') });
  assert.equal(back.chatTemplate, '{{ messages }}');
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  assert.equal(config.architectures[0], 'LlamaForCausalLM');
  assert.equal(config.num_key_value_heads, 4);
  assert.equal(config.tie_word_embeddings, true);
  assert.equal(config.layer_shapes, undefined); // uniform models get a plain transformers config
});

test('F16 and BF16 storage read back as the f32 weights rounded through half precision', async () => {
  const m = await loadStories();
  for (const [dtype, round] of [['F16', roundToF16], ['BF16', roundToBf16]] as const) {
    const dir = await tempDir(`hf-${dtype}`);
    await writeHfDirectory(m, dir, { dtype, tokenizerJson: minimalTokenizerJson });
    const back = await readHfDirectory(dir);
    assert.deepEqual(back.spec, m.spec);
    for (const [name, t] of m.weights) assert.deepEqual(back.weights.get(name)!.data, t.data.map(round), `${dtype} ${name}`);
    assert.equal(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')).torch_dtype, dtype === 'F16' ? 'float16' : 'bfloat16');
  }
});

test('sharded checkpoints are read through model.safetensors.index.json', async () => {
  const m = await loadStories();
  const dir = await tempDir('hf-shards');
  await writeHfDirectory(m, dir, { tokenizerJson: minimalTokenizerJson });
  await rm(join(dir, 'model.safetensors'));
  const names = [...m.weights.keys()];
  const shards = [names.slice(0, 20), names.slice(20)];
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    // Reverse order inside the shard: readers must not depend on tensor order.
    await writeSafetensors(join(dir, file), shard.reverse().map((n) => [n, m.weights.get(n)!]));
    for (const n of shard) weightMap[n] = file;
  }
  weightMap['model.layers.0.self_attn.rotary_emb.inv_freq'] = 'model-00001-of-00002.safetensors'; // extra names are ignored
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  const back = await readHfDirectory(dir);
  assert.deepEqual(back.spec, m.spec);
  assertSameWeights(back.weights, m.weights);
});

test('a pruned spec (layers differ; one without attention, one without MLP) round-trips via layer_shapes', async () => {
  const spec: ModelSpec = {
    architecture: 'llama',
    vocabSize: 96,
    hidden: 32,
    layers: [
      { heads: 4, kvHeads: 2, headDim: 8, ffn: 48 },
      { heads: 0, kvHeads: 0, headDim: 8, ffn: 40 },
      { heads: 2, kvHeads: 1, headDim: 8, ffn: 0 },
      { heads: 4, kvHeads: 4, headDim: 8, ffn: 16 },
    ],
    normEps: 1e-6,
    rope: { theta: 500000, scaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } },
    tiedEmbeddings: false,
    bosTokenId: 1,
    eosTokenIds: [2, 5],
    maxContext: 128,
  };
  const weights = randomWeights(spec, 7);
  const dir = await tempDir('hf-pruned');
  await writeHfDirectory({ spec, weights }, dir, { tokenizerJson: minimalTokenizerJson });
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  assert.equal(config.layer_shapes.length, 4);
  const back = await readHfDirectory(dir);
  assert.deepEqual(back.spec, spec);
  assertSameWeights(back.weights, weights);
  assert.equal(back.weights.has(weightName.q(1)), false);
  assert.equal(back.weights.has(weightName.gate(2)), false);
});

test('an architecture outside the LLaMA family is refused, naming it', async () => {
  const m = await loadStories();
  const dir = await tempDir('hf-arch');
  await writeHfDirectory(m, dir, { tokenizerJson: minimalTokenizerJson });
  await editJson(join(dir, 'config.json'), (c) => {
    c['architectures'] = ['GemmaForCausalLM'];
  });
  await rejectsWith(readHfDirectory(dir), 'GemmaForCausalLM', 'config.json');
});

/** The keys of the config transformers' LlamaConfig writes for such a model: nothing of ours. */
const LLAMA_CONFIG_KEYS = [
  'architectures', 'attention_bias', 'bos_token_id', 'eos_token_id', 'head_dim', 'hidden_act', 'hidden_size', 'intermediate_size', 'max_position_embeddings', 'mlp_bias',
  'model_type', 'num_attention_heads', 'num_hidden_layers', 'num_key_value_heads', 'rms_norm_eps', 'rope_scaling', 'rope_theta', 'tie_word_embeddings', 'torch_dtype', 'use_cache', 'vocab_size',
];

test('a pruned model whose layers are all equal and complete writes a plain LlamaConfig (no layer_shapes); one with empty sub-blocks keeps them', async () => {
  const layer = { heads: 2, kvHeads: 1, headDim: 8, ffn: 40 };
  const spec: ModelSpec = { architecture: 'llama', vocabSize: 96, hidden: 32, layers: [layer, { ...layer }, { ...layer }], normEps: 1e-5, rope: { theta: 10000 }, tiedEmbeddings: true, bosTokenId: 1, eosTokenIds: [2], maxContext: 64 };
  const weights = randomWeights(spec, 8);
  const dir = await tempDir('hf-uniform');
  await writeHfDirectory({ spec, weights }, dir, { tokenizerJson: minimalTokenizerJson });
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(Object.keys(config).sort(), LLAMA_CONFIG_KEYS);
  assert.deepEqual([config['num_attention_heads'], config['num_key_value_heads'], config['head_dim'], config['intermediate_size'], config['num_hidden_layers']], [2, 1, 8, 40, 3]);
  assert.deepEqual((await readHfDirectory(dir)).spec, spec);

  const attentionFree: ModelSpec = { ...spec, layers: spec.layers.map((l) => ({ ...l, heads: 0, kvHeads: 0 })) };
  const dir2 = await tempDir('hf-uniform-mlp-only');
  await writeHfDirectory({ spec: attentionFree, weights: randomWeights(attentionFree, 9) }, dir2, { tokenizerJson: minimalTokenizerJson });
  assert.equal(JSON.parse(await readFile(join(dir2, 'config.json'), 'utf8')).layer_shapes.length, 3);
  assert.deepEqual((await readHfDirectory(dir2)).spec, attentionFree);
});

test('a tensor whose shape contradicts config.json is refused, naming tensor, both shapes and file', async () => {
  const m = await loadStories();
  const dir = await tempDir('hf-shape');
  await writeHfDirectory(m, dir, { tokenizerJson: minimalTokenizerJson });
  await editJson(join(dir, 'config.json'), (c) => {
    c['intermediate_size'] = 128;
  });
  await rejectsWith(readHfDirectory(dir), 'model.layers.0.mlp.gate_proj.weight', '[172, 64]', '[128, 64]', 'model.safetensors');
});

test('a missing tensor is refused, naming it and the file', async () => {
  const m = await loadStories();
  const dir = await tempDir('hf-missing');
  const weights = new Map(m.weights);
  await writeHfDirectory(m, dir, { tokenizerJson: minimalTokenizerJson });
  weights.delete(weightName.o(3));
  await writeSafetensors(join(dir, 'model.safetensors'), [...weights]);
  await rejectsWith(readHfDirectory(dir), weightName.o(3), '[64, 64]', 'model.safetensors');
});

test('unsupported rope_scaling types and a missing tokenizer.json are clear errors', async () => {
  const m = await loadStories();
  const dir = await tempDir('hf-misc');
  await writeHfDirectory(m, dir, {});
  await rejectsWith(readHfDirectory(dir), 'tokenizer.json');
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(minimalTokenizerJson));
  await editJson(join(dir, 'config.json'), (c) => {
    c['rope_scaling'] = { rope_type: 'yarn', factor: 4 };
  });
  await rejectsWith(readHfDirectory(dir), "'yarn'");
});

test('generation_config.json overrides bos/eos, and eos may be a list', async () => {
  const m = await loadStories();
  const dir = await tempDir('hf-gen');
  await writeHfDirectory(m, dir, { tokenizerJson: minimalTokenizerJson });
  await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: [2, 3] }));
  assert.deepEqual((await readHfDirectory(dir)).spec.eosTokenIds, [2, 3]);
  assert.equal(expectedWeightShapes(m.spec).size, m.weights.size);
});
