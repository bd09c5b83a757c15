/**
 * llama2.c checkpoints (`.bin`) and tokenizers (`tokenizer.bin` / `tok*.bin`), as written by
 * llama2.c's export.py (`legacy_export`, `version1_export`) and tokenizer.py.
 *
 * Legacy: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
 *   vocab_size means a separate classifier), then float32 tensors: token_embedding, rms_att, wq,
 *   wk, wv, wo, rms_ffn, w1, w2, w3 (each stacked over layers), rms_final, freq_cis_real,
 *   freq_cis_imag ([seq_len, head_size/2] each, unused), and wcls when not shared.
 * Version 1: magic "ak42" (0x616b3432), int32 version, the same 7 int32, uint8 shared_classifier,
 *   zero-padded to 256 bytes; then attention_norm, ffn_norm (all layers), norm, tok_embeddings,
 *   wq, wk, wv, wo, w1, w2, w3 (all layers each), and output when not shared.
 * llama2.c names: w1 = gate, w3 = up, w2 = down. Q/K rows are interleaved-RoPE and are converted.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { LoadedModel } from './loaded-model.ts';
import { ModelFormatError, weightName } from './spec.ts';
import type { ModelSpec } from './spec.ts';
import { numel } from './tensor.ts';
import type { Tensor, Weights } from './tensor.ts';
import { ByteReader, checkModel, copyF32, exists, readCheckpointFile, requireBytes } from './checkpoint-io.ts';
import { interleavedToRotateHalf } from './rope-layout.ts';
import { TokenType } from '../tokenizer/types.ts';
import type { ScoredVocabSource } from '../tokenizer/types.ts';

export const LLAMA2C_MAGIC = 0x616b3432;
const V1_HEADER_BYTES = 256;
const LEGACY_HEADER_BYTES = 7 * 4;

export interface Llama2cHeader {
  /** 0 = legacy (headerless magic), 1 = export version 1. */
  version: 0 | 1;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  sharedClassifier: boolean;
  /** Byte offset of the first tensor. */
  dataOffset: number;
}

/** Parse and sanity-check the header (either format). */
export function parseLlama2cHeader(bytes: Uint8Array, file: string): Llama2cHeader {
  const r = new ByteReader(bytes, file);
  requireBytes(file, bytes.length, 4);
  const first = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  let version: 0 | 1 = 0;
  if (first === LLAMA2C_MAGIC) {
    r.u32();
    const v = r.i32();
    if (v === 2) {
      throw new ModelFormatError(
        `${file}: llama2.c export version 2 (int8-quantized) is not supported; re-export the checkpoint with version 1 (float32): python export.py out.bin --version 1 --checkpoint ...`,
      );
    }
    if (v !== 1) throw new ModelFormatError(`${file}: unknown llama2.c export version ${v} (supported: legacy and 1)`);
    version = 1;
  }
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = Array.from({ length: 7 }, () => r.i32()) as [
    number, number, number, number, number, number, number,
  ];
  let sharedClassifier = rawVocab > 0;
  if (version === 1) {
    sharedClassifier = r.u8() !== 0;
    requireBytes(file, bytes.length, V1_HEADER_BYTES);
  }
  const vocabSize = Math.abs(rawVocab);
  const bad = (msg: string) => new ModelFormatError(`${file}: not a valid llama2.c checkpoint: ${msg}`);
  for (const [k, v] of Object.entries({ dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen })) {
    if (!(v > 0)) throw bad(`${k} = ${v}`);
  }
  if (dim % nHeads !== 0) throw bad(`dim ${dim} is not divisible by n_heads ${nHeads}`);
  if (nHeads % nKvHeads !== 0) throw bad(`n_heads ${nHeads} is not a multiple of n_kv_heads ${nKvHeads}`);
  return {
    version,
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize,
    seqLen,
    sharedClassifier,
    dataOffset: version === 1 ? V1_HEADER_BYTES : LEGACY_HEADER_BYTES,
  };
}

/** The spec a llama2.c header describes (llama2.c's fixed eps, theta and special tokens). */
export function llama2cSpec(h: Llama2cHeader): ModelSpec {
  const layer = { heads: h.nHeads, kvHeads: h.nKvHeads, headDim: h.dim / h.nHeads, ffn: h.hiddenDim };
  return {
    architecture: 'llama',
    vocabSize: h.vocabSize,
    hidden: h.dim,
    layers: Array.from({ length: h.nLayers }, () => ({ ...layer })),
    normEps: 1e-5,
    rope: { theta: 10000 },
    tiedEmbeddings: h.sharedClassifier,
    bosTokenId: 1,
    eosTokenIds: [2],
    maxContext: h.seqLen,
  };
}

type PerLayer = 'attnNorm' | 'q' | 'k' | 'v' | 'o' | 'mlpNorm' | 'gate' | 'up' | 'down';
/** One run of float32s in file order: a weight stacked over layers, a single weight, or skipped floats. */
type Block = { layered: PerLayer; shape: number[] } | { single: 'embed' | 'finalNorm' | 'lmHead'; shape: number[] } | { skip: number };

function tensorOrder(h: Llama2cHeader): Block[] {
  const { dim, hiddenDim: ffn, vocabSize: vocab } = h;
  const kvDim = (dim / h.nHeads) * h.nKvHeads;
  const L = (layered: PerLayer, shape: number[]): Block => ({ layered, shape });
  const classifier: Block[] = h.sharedClassifier ? [] : [{ single: 'lmHead', shape: [vocab, dim] }];
  if (h.version === 0) {
    const freqCis = h.seqLen * (dim / h.nHeads / 2);
    return [
      { single: 'embed', shape: [vocab, dim] },
      L('attnNorm', [dim]),
      L('q', [dim, dim]),
      L('k', [kvDim, dim]),
      L('v', [kvDim, dim]),
      L('o', [dim, dim]),
      L('mlpNorm', [dim]),
      L('gate', [ffn, dim]),
      L('down', [dim, ffn]),
      L('up', [ffn, dim]),
      { single: 'finalNorm', shape: [dim] },
      { skip: 2 * freqCis }, // freq_cis_real, freq_cis_imag: RoPE tables we recompute
      ...classifier,
    ];
  }
  return [
    L('attnNorm', [dim]),
    L('mlpNorm', [dim]),
    { single: 'finalNorm', shape: [dim] },
    { single: 'embed', shape: [vocab, dim] },
    L('q', [dim, dim]),
    L('k', [kvDim, dim]),
    L('v', [kvDim, dim]),
    L('o', [dim, dim]),
    L('gate', [ffn, dim]),
    L('down', [dim, ffn]),
    L('up', [ffn, dim]),
    ...classifier,
  ];
}

/** Read the weights of a llama2.c checkpoint (in rotate-half layout) and its spec. */
export function parseLlama2cCheckpoint(bytes: Uint8Array, file: string): { spec: ModelSpec; weights: Weights } {
  const h = parseLlama2cHeader(bytes, file);
  const order = tensorOrder(h);
  const floats = order.reduce((n, b) => n + ('skip' in b ? b.skip : 'layered' in b ? h.nLayers * numel(b.shape) : numel(b.shape)), 0);
  requireBytes(file, bytes.length, h.dataOffset + floats * 4);

  const weights: Weights = new Map();
  let pos = h.dataOffset;
  const take = (shape: number[]): Tensor => {
    const data = copyF32(bytes, pos, numel(shape));
    pos += data.byteLength;
    return { shape: [...shape], data };
  };
  for (const b of order) {
    if ('skip' in b) pos += b.skip * 4;
    else if ('single' in b) weights.set(weightName[b.single], take(b.shape));
    else {
      for (let i = 0; i < h.nLayers; i++) {
        let t = take(b.shape);
        if (b.layered === 'q') t = interleavedToRotateHalf(t, h.nHeads);
        if (b.layered === 'k') t = interleavedToRotateHalf(t, h.nKvHeads);
        weights.set(weightName[b.layered](i), t);
      }
    }
  }
  const spec = llama2cSpec(h);
  checkModel(spec, weights, file);
  return { spec, weights };
}

/**
 * Parse a llama2.c tokenizer: u32 max_token_length, then per token f32 score, i32 byte length,
 * UTF-8 bytes. llama2.c's exporter writes '▁' as ' ' and BOS/EOS as "\n<s>\n" / "\n</s>\n"; we undo
 * both so the pieces read like the sentencepiece (and GGUF) vocabulary.
 */
export function parseLlama2cTokenizer(bytes: Uint8Array, file: string): ScoredVocabSource {
  const r = new ByteReader(bytes, file);
  r.u32(); // max_token_length: only a buffer-size hint for the C code
  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  while (r.pos < bytes.length) {
    const id = pieces.length;
    const score = r.f32();
    const len = r.i32();
    if (len < 0) throw new ModelFormatError(`${file}: token ${id} has negative length ${len}`);
    let piece = r.utf8(len, `token ${id}`);
    if (id === 1 && piece === '\n<s>\n') piece = '<s>';
    if (id === 2 && piece === '\n</s>\n') piece = '</s>';
    piece = piece.replaceAll(' ', '\u2581');
    pieces.push(piece);
    scores.push(score);
    types.push(
      id === 0 ? TokenType.unknown : id === 1 || id === 2 ? TokenType.control : /^<0x[0-9A-Fa-f]{2}>$/.test(piece) ? TokenType.byte : TokenType.normal,
    );
  }
  return { kind: 'scored-vocab', pieces, scores, types, bosTokenId: 1, eosTokenIds: [2], unkTokenId: 0, addDummyPrefix: true, origin: file };
}

/** Read a llama2.c tokenizer file. */
export async function readLlama2cTokenizer(path: string): Promise<ScoredVocabSource> {
  return parseLlama2cTokenizer(await readCheckpointFile(path), path);
}

/**
 * The tokenizer beside a checkpoint: `tokenizer.bin`, else `tok<vocab>.bin` (llama2.c's naming for
 * custom vocabularies), else the only `tok*.bin` in the directory.
 */
export async function findLlama2cTokenizer(checkpoint: string, vocabSize: number): Promise<string> {
  const dir = dirname(checkpoint);
  for (const name of ['tokenizer.bin', `tok${vocabSize}.bin`]) {
    const p = join(dir, name);
    if (await exists(p)) return p;
  }
  const candidates = (await fs.readdir(dir)).filter((f) => /^tok.*\.bin$/.test(f) && f !== basename(checkpoint)).sort();
  if (candidates.length === 1) return join(dir, candidates[0]!);
  if (candidates.length === 0) {
    throw new ModelFormatError(`no tokenizer for ${checkpoint}: looked for tokenizer.bin or tok*.bin in ${dir}; pass an explicit tokenizer path`);
  }
  throw new ModelFormatError(
    `several tokenizers beside ${checkpoint} (${candidates.join(', ')}) and none is tokenizer.bin or tok${vocabSize}.bin; pass an explicit tokenizer path`,
  );
}

/** Read a llama2.c checkpoint and its tokenizer (found beside it unless `tokenizerPath` is given). */
export async function readLlama2c(path: string, options: { tokenizerPath?: string } = {}): Promise<LoadedModel> {
  const { spec, weights } = parseLlama2cCheckpoint(await readCheckpointFile(path), path);
  const tokPath = options.tokenizerPath ?? (await findLlama2cTokenizer(path, spec.vocabSize));
  const tokenizer = await readLlama2cTokenizer(tokPath);
  if (tokenizer.pieces.length !== spec.vocabSize) {
    throw new ModelFormatError(
      `tokenizer vocabulary size mismatch: ${tokPath} has ${tokenizer.pieces.length} tokens but the model ${path} has vocab_size ${spec.vocabSize}`,
    );
  }
  return { spec, weights, tokenizer, format: 'llama2c', path };
}
