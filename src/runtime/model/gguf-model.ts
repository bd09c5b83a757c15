/**
 * A `llama` or `deci` GGUF file as a model (`deci`, llama.cpp's Nemotron-NAS architecture, is
 * `llama` with per-layer head counts and MLP widths; head_count 0 = no attention): the ModelSpec from its metadata, weights in our rotate-half RoPE
 * layout (GGUF holds Q/K interleaved; gguf-llama.ts), the checkpoint's own Q8_0 / Q4_0 blocks, and
 * the tokenizer from its metadata (`llama` and `gpt2` tokenizer models).
 */
import { type BlockQuantizedMatrix, type FileBlocks, permuteBlockRows } from './block-quantization.ts';
import { checkModel, formatShape, readCheckpointFile, requireBytes } from './checkpoint-io.ts';
import { type GgufFile, ggufBlocks, parseGguf, readGgufTensor, tensorByteSize } from './gguf-container.ts';
import { ggufTensorNames, llama3FromFactors } from './gguf-llama.ts';
import { GgufMetadata } from './gguf-metadata.ts';
import { readLlama2cTokenizer } from './llama2c.ts';
import type { LoadedModel } from './loaded-model.ts';
import { interleavedToRotateHalf, ropeRowOrder } from './rope-layout.ts';
import { expectedWeightShapes, type LayerSpec, ModelFormatError, type ModelSpec, type RopeScaling, weightName } from './spec.ts';
import { sameShape, type Weights } from './tensor.ts';
import type { ByteBpeSource, ScoredVocabSource, TokenizerSource } from '../tokenizer/types.ts';
import { TokenType } from '../tokenizer/types.ts';

function perLayer(v: number | number[], n: number, key: string, file: string): number[] {
  const values = Array.isArray(v) ? v : Array.from({ length: n }, () => v);
  if (values.length !== n) throw new ModelFormatError(`${file}: ${key} has ${values.length} entries for ${n} layers`);
  const bad = values.findIndex((x) => !Number.isInteger(x) || x < 0);
  if (bad >= 0) throw new ModelFormatError(`${file}: ${key} of layer ${bad} is ${values[bad]}; a count must be a non-negative integer`);
  return values;
}

/** Architectures read here: all compute as LLaMA; `deci` may vary its shapes per layer; `qwen2` adds q/k/v biases. */
const ARCHITECTURES = ['llama', 'deci', 'qwen2'];

function specFromGguf(g: GgufFile): ModelSpec {
  const arch = new GgufMetadata(g, '').str('general.architecture');
  if (arch === undefined || !ARCHITECTURES.includes(arch)) {
    throw new ModelFormatError(`${g.file}: unsupported architecture '${arch ?? '(missing general.architecture)'}' (supported: ${ARCHITECTURES.join(', ')})`);
  }
  const m = new GgufMetadata(g, arch);
  const file = g.file;
  const hidden = m.reqNum('.embedding_length');
  const nLayers = m.reqNum('.block_count');
  const heads = perLayer(m.numOrArr('.attention.head_count') ?? missing(file, `${arch}.attention.head_count`), nLayers, `${arch}.attention.head_count`, file);
  const kvHeads = perLayer(m.numOrArr('.attention.head_count_kv') ?? heads, nLayers, `${arch}.attention.head_count_kv`, file);
  const firstHeads = heads.find((h) => h > 0);
  const headDim = m.num('.attention.key_length') ?? (firstHeads ? hidden / firstHeads : 0);
  if (!Number.isInteger(headDim)) throw new ModelFormatError(`${file}: embedding_length ${hidden} is not divisible by head_count ${firstHeads}`);
  const valueLength = m.num('.attention.value_length');
  if (valueLength !== undefined && valueLength !== headDim) {
    throw new ModelFormatError(`${file}: attention.value_length ${valueLength} differs from key_length ${headDim}; not supported`);
  }
  const ropeDim = m.num('.rope.dimension_count');
  if (ropeDim !== undefined && ropeDim !== headDim) {
    throw new ModelFormatError(`${file}: rope.dimension_count ${ropeDim} differs from the head size ${headDim}; partial RoPE is not supported`);
  }
  // Feed-forward width: the metadata when present (scalar or per-layer), else the gate tensor's rows.
  const ffnMeta = m.numOrArr('.feed_forward_length');
  const ffn =
    ffnMeta !== undefined
      ? perLayer(ffnMeta, nLayers, `${arch}.feed_forward_length`, file)
      : Array.from({ length: nLayers }, (_, i) => g.tensors.get(`blk.${i}.ffn_gate.weight`)?.shape[0] ?? 0);
  heads.forEach((h, i) => {
    const kv = kvHeads[i]!;
    // deci's head_count_kv 0 under query heads is a "linear attention" (one n_embd × n_embd matrix).
    if (h > 0 && (kv === 0 || h % kv !== 0)) {
      throw new ModelFormatError(`${file}: layer ${i} has ${h} query heads and ${kv} KV heads; supported: query heads a multiple of KV heads (no linear-attention layers)`);
    }
  });
  const layers: LayerSpec[] = heads.map((h, i) => ({ heads: h, kvHeads: h === 0 ? 0 : kvHeads[i]!, headDim, ffn: ffn[i]! }));

  const embd = g.tensors.get('token_embd.weight');
  if (!embd) throw new ModelFormatError(`${file}: missing tensor token_embd.weight`);
  const vocabSize = embd.shape[0]!;
  const metaVocab = m.num('.vocab_size');
  if (metaVocab !== undefined && metaVocab !== vocabSize) {
    throw new ModelFormatError(`${file}: ${arch}.vocab_size ${metaVocab} but token_embd.weight has ${vocabSize} rows`);
  }

  const theta = m.num('.rope.freq_base') ?? 10000;
  let scaling: RopeScaling | undefined;
  const scalingType = m.str('.rope.scaling.type') ?? (m.num('.rope.scale_linear') !== undefined ? 'linear' : undefined);
  if (scalingType === 'linear') {
    const factor = m.num('.rope.scaling.factor') ?? m.num('.rope.scale_linear') ?? 1;
    if (factor !== 1) scaling = { type: 'linear', factor };
  } else if (scalingType !== undefined && scalingType !== 'none') {
    throw new ModelFormatError(`${file}: RoPE scaling type '${scalingType}' is not supported (supported: none, linear, llama3)`);
  }
  if (g.tensors.has('rope_freqs.weight')) {
    if (scaling) throw new ModelFormatError(`${file}: both linear RoPE scaling and rope_freqs.weight; not supported`);
    scaling = llama3FromFactors(readGgufTensor(g, 'rope_freqs.weight').data, theta, headDim, m.num('.rope.scaling.original_context_length'), file);
  }

  const tk = new GgufMetadata(g, 'tokenizer.ggml');
  const isSpm = tk.str('.model') !== 'gpt2';
  const bos = tk.num('.bos_token_id') ?? (isSpm ? 1 : missing(file, 'tokenizer.ggml.bos_token_id'));
  const eos = tk.num('.eos_token_id') ?? (isSpm ? 2 : missing(file, 'tokenizer.ggml.eos_token_id'));
  const eosTokenIds = [...new Set([eos, tk.num('.eot_token_id'), tk.num('.eom_token_id')].filter((x): x is number => x !== undefined))];

  return {
    architecture: 'llama',
    ...(arch === 'qwen2' && { family: 'qwen2' as const, attentionBias: true }),
    vocabSize,
    hidden,
    layers,
    normEps: m.reqNum('.attention.layer_norm_rms_epsilon'),
    rope: scaling ? { theta, scaling } : { theta },
    tiedEmbeddings: !g.tensors.has('output.weight') || sameBytes(g, 'output.weight', 'token_embd.weight'),
    bosTokenId: bos,
    eosTokenIds,
    maxContext: m.reqNum('.context_length'),
  };
}

/**
 * Whether two tensors are stored byte-identically. An output.weight that is an exact copy of
 * token_embd.weight (as in llama.cpp's conversion of stories260K) is read as tied embeddings, the
 * same test llama2.c's exporter applies; the model computes the same either way.
 */
function sameBytes(g: GgufFile, a: string, b: string): boolean {
  const ta = g.tensors.get(a);
  const tb = g.tensors.get(b);
  if (!ta || !tb || ta.type !== tb.type || !sameShape(ta.shape, tb.shape)) return false;
  const size = tensorByteSize(g, ta);
  if (ta.offset + size > g.bytes.length || tb.offset + size > g.bytes.length) return false; // reported as truncation later
  return Buffer.from(g.bytes.buffer, g.bytes.byteOffset + ta.offset, size).equals(Buffer.from(g.bytes.buffer, g.bytes.byteOffset + tb.offset, size));
}

function missing(file: string, key: string): never {
  throw new ModelFormatError(`${file}: missing metadata ${key}`);
}

function tokenizerFromGguf(g: GgufFile, spec: ModelSpec): TokenizerSource | undefined {
  const tk = new GgufMetadata(g, 'tokenizer.ggml');
  const model = tk.str('.model');
  if (model === undefined) return undefined;
  const pieces = tk.strArr('.tokens') ?? missing(g.file, 'tokenizer.ggml.tokens');
  if (pieces.length !== spec.vocabSize) {
    throw new ModelFormatError(`${g.file}: tokenizer.ggml.tokens has ${pieces.length} tokens but token_embd.weight has ${spec.vocabSize} rows`);
  }
  const types = tk.rawNumArr('.token_type') ?? pieces.map(() => TokenType.normal);
  if (model === 'llama') {
    const scores = tk.rawNumArr('.scores') ?? pieces.map(() => 0);
    const unk = tk.num('.unknown_token_id');
    const src: ScoredVocabSource = {
      kind: 'scored-vocab',
      pieces,
      scores,
      types,
      bosTokenId: spec.bosTokenId,
      eosTokenIds: spec.eosTokenIds,
      addDummyPrefix: tk.bool('.add_space_prefix') ?? true,
      origin: g.file,
    };
    if (unk !== undefined) src.unkTokenId = unk;
    return src;
  }
  if (model === 'gpt2') {
    const src: ByteBpeSource = {
      kind: 'byte-bpe',
      pieces,
      merges: tk.strArr('.merges') ?? missing(g.file, 'tokenizer.ggml.merges'),
      types,
      bosTokenId: spec.bosTokenId,
      eosTokenIds: spec.eosTokenIds,
      origin: g.file,
    };
    const pre = tk.str('.pre');
    if (pre !== undefined) src.preTokenizer = pre;
    return src;
  }
  throw new ModelFormatError(`${g.file}: tokenizer model '${model}' is not supported (supported: llama, gpt2)`);
}

/** Build spec, rotate-half weights and tokenizer from a parsed GGUF. */
export function modelFromGguf(g: GgufFile): { spec: ModelSpec; weights: Weights; fileBlocks: FileBlocks; tokenizer: TokenizerSource | undefined; chatTemplate: string | undefined } {
  const spec = specFromGguf(g);
  const names = ggufTensorNames(spec);
  const shapes = expectedWeightShapes(spec);
  // Check presence, type and shape of everything before decoding anything, and truncation once.
  let end = 0;
  for (const n of names) {
    const t = g.tensors.get(n.gguf);
    const want = shapes.get(n.hf)!;
    if (!t) throw new ModelFormatError(`${g.file}: missing tensor ${n.gguf} (expected shape ${formatShape(want)})`);
    if (!sameShape(t.shape, want)) {
      throw new ModelFormatError(`${g.file}: tensor ${n.gguf} has shape ${formatShape(t.shape)}, expected ${formatShape(want)} from the metadata`);
    }
    end = Math.max(end, t.offset + tensorByteSize(g, t));
  }
  requireBytes(g.file, g.bytes.length, end);
  const weights: Weights = new Map();
  const fileBlocks = new Map<string, BlockQuantizedMatrix>();
  for (const n of names) {
    const t = readGgufTensor(g, n.gguf);
    weights.set(n.hf, n.ropeHeads !== undefined ? interleavedToRotateHalf(t, n.ropeHeads) : t);
    // The embedding's blocks serve only as a tied LM head (the gather reads float).
    if (n.hf === weightName.embed && !spec.tiedEmbeddings) continue;
    const q = ggufBlocks(g, n.gguf);
    if (q) fileBlocks.set(n.hf, n.ropeHeads !== undefined ? permuteBlockRows(q, ropeRowOrder(q.n, n.ropeHeads, true)) : q);
  }
  checkModel(spec, weights, g.file);
  return { spec, weights, fileBlocks, tokenizer: tokenizerFromGguf(g, spec), chatTemplate: new GgufMetadata(g, '').str('tokenizer.chat_template') };
}

/** Read a GGUF model file. `tokenizerPath` (a llama2.c tokenizer) is used only when the GGUF has none. */
export async function readGguf(path: string, options: { tokenizerPath?: string } = {}): Promise<LoadedModel> {
  const g = parseGguf(await readCheckpointFile(path), path);
  const { spec, weights, fileBlocks, tokenizer: embedded, chatTemplate } = modelFromGguf(g);
  let tokenizer: TokenizerSource;
  if (embedded) tokenizer = embedded;
  else if (options.tokenizerPath) {
    const tok = await readLlama2cTokenizer(options.tokenizerPath);
    if (tok.pieces.length !== spec.vocabSize) {
      throw new ModelFormatError(
        `tokenizer vocabulary size mismatch: ${options.tokenizerPath} has ${tok.pieces.length} tokens but the model ${path} has vocab_size ${spec.vocabSize}`,
      );
    }
    tokenizer = tok;
  } else throw new ModelFormatError(`${path}: no tokenizer metadata (tokenizer.ggml.model); pass a tokenizer path`);
  const model: LoadedModel = { spec, weights, tokenizer, format: 'gguf', path };
  if (chatTemplate !== undefined) model.chatTemplate = chatTemplate;
  if (fileBlocks.size > 0) model.fileBlocks = fileBlocks;
  return model;
}
