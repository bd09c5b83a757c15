/**
 * Hugging Face directories of the LLaMA family (model_type llama, mistral, qwen2): config.json (+ generation_config.json), model.safetensors or
 * sharded model.safetensors.index.json, tokenizer.json (+ tokenizer_config.json). Weight names and
 * the rotate-half RoPE layout are already ours, so reading and writing only move bytes.
 *
 * Pruned models: config.json may carry `"layer_shapes": [{heads, kv_heads, head_dim, ffn}, ...]`,
 * our extension that overrides the uniform per-layer dimensions (heads 0 = attention removed,
 * ffn 0 = MLP removed). transformers ignores unknown config keys, but cannot build such models;
 * a model whose layers are all equal and complete gets its family's plain config instead.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { LoadedModel } from './loaded-model.ts';
import { ModelFormatError, expectedWeightShapes } from './spec.ts';
import type { LayerSpec, ModelFamily, ModelSpec, RopeScaling } from './spec.ts';
import { sameShape } from './tensor.ts';
import type { Tensor, Weights } from './tensor.ts';
import { checkModel, exists, formatShape } from './checkpoint-io.ts';
import { BYTES_PER, openSafetensors, writeSafetensors } from './safetensors.ts';
import { DEFAULT_MAX_SHARD_BYTES, planShards, shardIndex } from './safetensors-shards.ts';
import type { SafetensorsDtype } from './safetensors.ts';
import type { TokenizerJsonSource } from '../tokenizer/types.ts';

type Json = Record<string, unknown>;

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (e) {
    if ((e as { code?: unknown }).code === 'ENOENT') throw new ModelFormatError(`no such file: ${path}`);
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFormatError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

async function readJsonIfExists(path: string): Promise<unknown> {
  return (await exists(path)) ? readJson(path) : undefined;
}

function asObject(v: unknown, where: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ModelFormatError(`${where} is not a JSON object`);
  return v as Json;
}

/** Typed access to config keys; every complaint names the file and the key. */
class ConfigReader {
  constructor(
    readonly c: Json,
    readonly file: string,
  ) {}
  bad(key: string, want: string): ModelFormatError {
    return new ModelFormatError(`${this.file}: ${key} should be ${want}, got ${JSON.stringify(this.c[key])}`);
  }
  int(key: string): number | undefined {
    const v = this.c[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw this.bad(key, 'a non-negative integer');
    return v;
  }
  reqInt(key: string): number {
    const v = this.int(key);
    if (v === undefined) throw new ModelFormatError(`${this.file}: missing ${key}`);
    return v;
  }
  num(key: string): number | undefined {
    const v = this.c[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.bad(key, 'a number');
    return v;
  }
  /** A token id or a list of them. */
  ids(key: string): number[] | undefined {
    const v = this.c[key];
    if (v === undefined || v === null) return undefined;
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) throw this.bad(key, 'a token id or a list of token ids');
    return list as number[];
  }
}

/** The Hugging Face class each family's checkpoints name in `architectures`. */
const ARCHITECTURE_OF: Record<ModelFamily, string> = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' };
const FAMILIES = Object.keys(ARCHITECTURE_OF) as ModelFamily[];

/** The family a config.json describes; anything this runtime would compute differently is refused in one line. */
function familyOf(c: Json, file: string): ModelFamily {
  const archs = c['architectures'];
  const modelType = c['model_type'];
  const fromArch = (a: unknown) => FAMILIES.find((f) => ARCHITECTURE_OF[f] === String(a));
  const list = archs === undefined || archs === null ? [] : Array.isArray(archs) ? archs : [archs];
  for (const a of list) {
    if (!fromArch(a)) throw new ModelFormatError(`${file}: unsupported architecture '${String(a)}' (supported: ${FAMILIES.map((f) => ARCHITECTURE_OF[f]).join(', ')})`);
  }
  if (modelType !== undefined && !FAMILIES.includes(modelType as ModelFamily)) {
    throw new ModelFormatError(`${file}: unsupported model_type '${String(modelType)}' (supported: ${FAMILIES.join(', ')})`);
  }
  if (list.length === 0 && modelType === undefined) throw new ModelFormatError(`${file}: has neither architectures nor model_type`);
  const family = (modelType as ModelFamily | undefined) ?? fromArch(list[0])!;
  if (list.some((a) => fromArch(a) !== family)) throw new ModelFormatError(`${file}: architectures ${JSON.stringify(archs)} do not match model_type '${family}'`);
  return family;
}

/** What the families' configs may ask for that the LLaMA computation here does not do. */
function checkSupported(c: Json, family: ModelFamily, file: string): void {
  const act = c['hidden_act'];
  if (act !== undefined && act !== 'silu') throw new ModelFormatError(`${file}: hidden_act '${String(act)}' is not supported (only silu)`);
  for (const k of ['num_local_experts', 'num_experts', 'n_routed_experts']) {
    if (typeof c[k] === 'number' && c[k] > 0) throw new ModelFormatError(`${file}: ${k} ${String(c[k])}: mixture-of-experts layers are not supported`);
  }
  if (family === 'llama') {
    for (const k of ['attention_bias', 'mlp_bias']) {
      if (c[k] === true) throw new ModelFormatError(`${file}: ${k} is true; projection biases are supported for qwen2's q/k/v only`);
    }
  }
  // Sliding-window attention equals full attention while the window covers the whole context.
  const window = c['sliding_window'];
  const windowed = family === 'mistral' || (family === 'qwen2' && c['use_sliding_window'] === true);
  const context = c['max_position_embeddings'];
  if (windowed && window !== undefined && window !== null && !(typeof window === 'number' && typeof context === 'number' && window >= context)) {
    throw new ModelFormatError(`${file}: sliding_window ${JSON.stringify(window)} is shorter than max_position_embeddings ${JSON.stringify(context)}; sliding-window attention is not supported`);
  }
}

function ropeScaling(raw: unknown, file: string): RopeScaling | undefined {
  if (raw === undefined || raw === null) return undefined;
  const r = new ConfigReader(asObject(raw, `${file}: rope_scaling`), `${file}: rope_scaling`);
  const type = r.c['rope_type'] ?? r.c['type'];
  if (type === 'default') return undefined;
  const factor = r.num('factor');
  if (type === 'linear') {
    if (factor === undefined) throw new ModelFormatError(`${file}: rope_scaling (linear) has no factor`);
    return { type: 'linear', factor };
  }
  if (type === 'llama3') {
    const need = (k: string): number => {
      const v = r.num(k);
      if (v === undefined) throw new ModelFormatError(`${file}: rope_scaling (llama3) is missing ${k}`);
      return v;
    };
    return {
      type: 'llama3',
      factor: need('factor'),
      lowFreqFactor: need('low_freq_factor'),
      highFreqFactor: need('high_freq_factor'),
      originalMaxPositionEmbeddings: need('original_max_position_embeddings'),
    };
  }
  throw new ModelFormatError(`${file}: rope_scaling type '${String(type)}' is not supported (supported: linear, llama3)`);
}

function layerShapes(raw: unknown, n: number, headDim: number, file: string): LayerSpec[] {
  if (!Array.isArray(raw) || raw.length !== n) {
    throw new ModelFormatError(`${file}: layer_shapes must be an array of ${n} entries (num_hidden_layers), got ${Array.isArray(raw) ? raw.length : typeof raw}`);
  }
  return raw.map((entry, i) => {
    const r = new ConfigReader(asObject(entry, `${file}: layer_shapes[${i}]`), `${file}: layer_shapes[${i}]`);
    return { heads: r.reqInt('heads'), kvHeads: r.reqInt('kv_heads'), headDim: r.int('head_dim') ?? headDim, ffn: r.reqInt('ffn') };
  });
}

/** The spec a config.json describes; `generation` (generation_config.json) may override bos/eos. */
export function specFromHfConfig(config: unknown, file: string, generation?: unknown): ModelSpec {
  const c = asObject(config, file);
  const family = familyOf(c, file);
  checkSupported(c, family, file);
  const r = new ConfigReader(c, file);
  const hidden = r.reqInt('hidden_size');
  const nLayers = r.reqInt('num_hidden_layers');
  const heads = r.reqInt('num_attention_heads');
  const kvHeads = r.int('num_key_value_heads') ?? heads;
  const headDim = r.int('head_dim') ?? (heads > 0 ? hidden / heads : 0);
  if (!Number.isInteger(headDim)) throw new ModelFormatError(`${file}: hidden_size ${hidden} is not divisible by num_attention_heads ${heads}; set head_dim`);
  const ffn = r.reqInt('intermediate_size');
  const layers =
    c['layer_shapes'] !== undefined
      ? layerShapes(c['layer_shapes'], nLayers, headDim, file)
      : Array.from({ length: nLayers }, () => ({ heads, kvHeads, headDim, ffn }));
  const gen = generation === undefined ? undefined : new ConfigReader(asObject(generation, 'generation_config.json'), 'generation_config.json');
  const bos = gen?.ids('bos_token_id')?.[0] ?? r.ids('bos_token_id')?.[0];
  const eos = gen?.ids('eos_token_id') ?? r.ids('eos_token_id');
  if (bos === undefined) throw new ModelFormatError(`${file}: missing bos_token_id`);
  if (eos === undefined || eos.length === 0) throw new ModelFormatError(`${file}: missing eos_token_id`);
  const scaling = ropeScaling(c['rope_scaling'], file);
  const theta = r.num('rope_theta') ?? 10000;
  return {
    architecture: 'llama',
    ...(family !== 'llama' && { family }),
    // Qwen2's attention always has q/k/v biases (its config has no switch for them).
    ...(family === 'qwen2' && { attentionBias: true }),
    vocabSize: r.reqInt('vocab_size'),
    hidden,
    layers,
    normEps: r.num('rms_norm_eps') ?? 1e-6,
    rope: scaling ? { theta, scaling } : { theta },
    tiedEmbeddings: c['tie_word_embeddings'] === true,
    bosTokenId: bos,
    eosTokenIds: eos,
    maxContext: r.reqInt('max_position_embeddings'),
  };
}

const TORCH_DTYPE: Record<SafetensorsDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * Whether transformers' own config describes every layer: all equal, each with attention and MLP.
 * Otherwise config.json carries `layer_shapes` (our extension).
 */
export function hasUniformLayers(spec: ModelSpec): boolean {
  const l0 = spec.layers[0]!;
  const same = spec.layers.every((l) => l.heads === l0.heads && l.kvHeads === l0.kvHeads && l.headDim === l0.headDim && l.ffn === l0.ffn);
  return same && l0.heads > 0 && l0.ffn > 0;
}

/** The keys only one family's transformers config has. */
function familyKeys(spec: ModelSpec): Json {
  switch (spec.family) {
    case undefined:
      return { attention_bias: false, mlp_bias: false };
    case 'mistral':
      return { sliding_window: null };
    case 'qwen2':
      return { use_sliding_window: false, sliding_window: null, max_window_layers: spec.layers.length };
  }
}

/**
 * The standard transformers config of the spec's family (LlamaConfig, MistralConfig, Qwen2Config),
 * plus `layer_shapes` unless every layer is equal and complete (hasUniformLayers).
 */
export function hfConfigFromSpec(spec: ModelSpec, dtype: SafetensorsDtype = 'F32'): Json {
  const attn = spec.layers.find((l) => l.heads > 0) ?? spec.layers[0]!;
  const family = spec.family ?? 'llama';
  if (spec.attentionBias && family !== 'qwen2') throw new ModelFormatError(`a ${family} config cannot say that q/k/v have biases; only qwen2 checkpoints carry them`);
  const s = spec.rope.scaling;
  const config: Json = {
    architectures: [ARCHITECTURE_OF[family]],
    model_type: family,
    vocab_size: spec.vocabSize,
    hidden_size: spec.hidden,
    intermediate_size: Math.max(...spec.layers.map((l) => l.ffn)),
    num_hidden_layers: spec.layers.length,
    num_attention_heads: attn.heads,
    num_key_value_heads: attn.kvHeads,
    head_dim: attn.headDim,
    hidden_act: 'silu',
    max_position_embeddings: spec.maxContext,
    rms_norm_eps: spec.normEps,
    rope_theta: spec.rope.theta,
    rope_scaling:
      s === undefined
        ? null
        : s.type === 'linear'
          ? { rope_type: 'linear', factor: s.factor }
          : {
              rope_type: 'llama3',
              factor: s.factor,
              low_freq_factor: s.lowFreqFactor,
              high_freq_factor: s.highFreqFactor,
              original_max_position_embeddings: s.originalMaxPositionEmbeddings,
            },
    tie_word_embeddings: spec.tiedEmbeddings,
    bos_token_id: spec.bosTokenId,
    eos_token_id: spec.eosTokenIds.length === 1 ? spec.eosTokenIds[0] : spec.eosTokenIds,
    ...familyKeys(spec),
    torch_dtype: TORCH_DTYPE[dtype],
    use_cache: true,
  };
  if (!hasUniformLayers(spec)) config['layer_shapes'] = spec.layers.map((l) => ({ heads: l.heads, kv_heads: l.kvHeads, head_dim: l.headDim, ffn: l.ffn }));
  return config;
}

/** Which file holds each tensor: the single model.safetensors or the shard index's weight_map. */
async function weightFiles(dir: string): Promise<{ fileOf: (name: string) => string | undefined; described: string }> {
  const single = join(dir, 'model.safetensors');
  if (await exists(single)) return { fileOf: () => single, described: single };
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (await exists(indexPath)) {
    const index = asObject(await readJson(indexPath), indexPath);
    const map = asObject(index['weight_map'], `${indexPath}: weight_map`);
    return {
      fileOf: (name) => (typeof map[name] === 'string' ? join(dir, map[name]) : undefined),
      described: indexPath,
    };
  }
  const hasBin = (await exists(join(dir, 'pytorch_model.bin'))) || (await exists(join(dir, 'pytorch_model.bin.index.json')));
  throw new ModelFormatError(
    `${dir}: no model.safetensors or model.safetensors.index.json` + (hasBin ? ' (PyTorch .bin weights are not supported; convert them to safetensors)' : ''),
  );
}

/** Read every expected weight, checking presence and shape against the config before decoding. */
async function readHfWeights(dir: string, spec: ModelSpec): Promise<Weights> {
  const { fileOf, described } = await weightFiles(dir);
  const expected = expectedWeightShapes(spec);
  const byFile = new Map<string, [string, number[]][]>();
  for (const [name, shape] of expected) {
    const f = fileOf(name);
    if (f === undefined) throw new ModelFormatError(`${described}: missing tensor ${name} (expected shape ${formatShape(shape)} from config.json)`);
    let list = byFile.get(f);
    if (!list) byFile.set(f, (list = []));
    list.push([name, shape]);
  }
  const weights: Weights = new Map();
  // One shard in memory at a time: its bytes are dropped once its tensors are decoded.
  for (const [f, list] of byFile) {
    const st = await openSafetensors(f);
    for (const [name, shape] of list) {
      const e = st.entries.get(name);
      if (!e) throw new ModelFormatError(`${f}: missing tensor ${name} (expected shape ${formatShape(shape)} from config.json)`);
      if (!sameShape(e.shape, shape)) {
        throw new ModelFormatError(`${f}: tensor ${name} has shape ${formatShape(e.shape)}, but config.json implies ${formatShape(shape)}`);
      }
    }
    for (const [name] of list) weights.set(name, st.read(name));
  }
  // Keep the order readers agree on (expectedWeightShapes), whatever the shard order was.
  return new Map([...expected.keys()].map((n) => [n, weights.get(n)!]));
}

function chatTemplateOf(tokConfig: unknown): string | undefined {
  if (typeof tokConfig !== 'object' || tokConfig === null) return undefined;
  const t = (tokConfig as Json)['chat_template'];
  if (typeof t === 'string') return t;
  // Older multi-template form: [{ name, template }, ...]; the 'default' one is the chat template.
  if (Array.isArray(t)) {
    const d = t.find((x) => typeof x === 'object' && x !== null && (x as Json)['name'] === 'default') as Json | undefined;
    if (typeof d?.['template'] === 'string') return d['template'];
  }
  return undefined;
}

/** Read a Hugging Face LLaMA directory. `tokenizerPath` overrides `<dir>/tokenizer.json`. */
export async function readHfDirectory(dir: string, options: { tokenizerPath?: string } = {}): Promise<LoadedModel> {
  const configPath = join(dir, 'config.json');
  const config = await readJson(configPath);
  const generation = await readJsonIfExists(join(dir, 'generation_config.json'));
  const spec = specFromHfConfig(config, configPath, generation);
  const weights = await readHfWeights(dir, spec);
  checkModel(spec, weights, dir);

  const tokPath = options.tokenizerPath ?? join(dir, 'tokenizer.json');
  if (!(await exists(tokPath))) {
    throw new ModelFormatError(`${dir}: no tokenizer.json (${tokPath}); a Hugging Face model directory needs the fast-tokenizer file tokenizer.json`);
  }
  const tokConfig = await readJsonIfExists(join(dir, 'tokenizer_config.json'));
  const tokenizer: TokenizerJsonSource = { kind: 'tokenizer.json', json: await readJson(tokPath), origin: tokPath };
  if (tokConfig !== undefined) tokenizer.config = tokConfig;
  const model: LoadedModel = { spec, weights, tokenizer, format: 'hf', path: dir };
  const template = chatTemplateOf(tokConfig) ?? ((await exists(join(dir, 'chat_template.jinja'))) ? await fs.readFile(join(dir, 'chat_template.jinja'), 'utf8') : undefined);
  if (template !== undefined) model.chatTemplate = template;
  return model;
}

export interface WriteHfOptions {
  /** Weight storage (default F32, bit-exact). */
  dtype?: SafetensorsDtype;
  /** Parsed tokenizer.json to write beside the weights. */
  tokenizerJson?: unknown;
  /** Parsed tokenizer_config.json to write beside the weights. */
  tokenizerConfig?: unknown;
  /** Most tensor bytes per safetensors file; more are sharded (default: under the 2 GiB read limit). */
  maxShardBytes?: number;
}

/** Write `model` as a Hugging Face directory (created if needed) that readHfDirectory reads back exactly. */
export async function writeHfDirectory(model: { spec: ModelSpec; weights: Weights }, dir: string, options: WriteHfOptions = {}): Promise<void> {
  const { spec, weights } = model;
  checkModel(spec, weights, 'HF writer input');
  const dtype = options.dtype ?? 'F32';
  await fs.mkdir(dir, { recursive: true });
  const ordered = [...expectedWeightShapes(spec).keys()].map((n): [string, Tensor] => [n, weights.get(n)!]);
  const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
  const shards = planShards(
    ordered.map(([n, t]) => [n, t.data.length * BYTES_PER[dtype]]),
    options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
  );
  // Readers take model.safetensors over an index, so a rewrite must not leave the other layout behind.
  await fs.rm(join(dir, shards.length > 1 ? 'model.safetensors' : 'model.safetensors.index.json'), { force: true });
  for (const shard of shards) {
    await writeSafetensors(join(dir, shard.file), shard.names.map((n): [string, Tensor] => [n, weights.get(n)!]), { dtype });
  }
  if (shards.length > 1) await fs.writeFile(join(dir, 'model.safetensors.index.json'), json(shardIndex(shards)));
  await fs.writeFile(join(dir, 'config.json'), json(hfConfigFromSpec(spec, dtype)));
  const eos = spec.eosTokenIds.length === 1 ? spec.eosTokenIds[0] : spec.eosTokenIds;
  await fs.writeFile(join(dir, 'generation_config.json'), json({ bos_token_id: spec.bosTokenId, eos_token_id: eos }));
  if (options.tokenizerJson !== undefined) await fs.writeFile(join(dir, 'tokenizer.json'), json(options.tokenizerJson));
  if (options.tokenizerConfig !== undefined) await fs.writeFile(join(dir, 'tokenizer_config.json'), json(options.tokenizerConfig));
}
