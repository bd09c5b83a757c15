/**
 * A checkpoint's tokenizer as GGUF `tokenizer.ggml.*` metadata, for every tokenizer we load:
 * scored vocabularies (llama2.c, GGUF `llama`) and byte-level BPE (GGUF `gpt2`) as they are, and a
 * Hugging Face tokenizer.json converted to the one of those two that llama.cpp runs the same way:
 *
 * - BPE with byte fallback (sentencepiece layout, e.g. LLaMA-2 and our own pruned directories) →
 *   `llama`: llama.cpp merges the adjacent pair whose merged piece scores highest, so a piece made
 *   by the r-th merge of tokenizer.json scores −r (earlier merges first), pieces no merge makes
 *   score below every merge.
 * - Byte-level BPE → `gpt2` with the merges, its pre-tokenizer named as llama.cpp knows it (GPT-2's
 *   own, LLaMA-3's or Qwen2's split regex); any other pre-tokenizer is refused, since llama.cpp
 *   would split text differently.
 */
import { LLAMA3_SPLIT, QWEN2_SPLIT } from '../tokenizer/byte-bpe.ts';
import { parseBytePiece, SPACE_MARK } from '../tokenizer/scored-vocab.ts';
import { type ByteBpeSource, type ScoredVocabSource, type TokenizerJsonSource, type TokenizerSource, TokenType } from '../tokenizer/types.ts';
import { type GgufKv, GgufType, type GgufValue } from './gguf-container.ts';
import { ModelFormatError, type ModelSpec } from './spec.ts';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function fail(source: TokenizerJsonSource, what: string): never {
  throw new ModelFormatError(`GGUF export: tokenizer ${source.origin}: ${what}`);
}

/** Pieces by id (vocab and added tokens), and the type of each. */
function piecesOf(source: TokenizerJsonSource, model: Json, vocabSize: number): { pieces: string[]; types: number[] } {
  const json = source.json as Json;
  const vocab = model['vocab'];
  if (!isObject(vocab)) fail(source, 'model.vocab is not an object');
  const pieces: (string | undefined)[] = new Array(vocabSize);
  const types: number[] = new Array(vocabSize).fill(TokenType.normal);
  const put = (piece: string, id: unknown, type?: number): void => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) fail(source, `token ${JSON.stringify(piece)} has id ${String(id)}, outside the model's ${vocabSize}-token vocabulary`);
    pieces[id] ??= piece;
    if (type !== undefined) types[id] = type;
  };
  for (const [piece, id] of Object.entries(vocab)) put(piece, id);
  for (const t of Array.isArray(json['added_tokens']) ? json['added_tokens'] : []) {
    if (isObject(t) && typeof t['content'] === 'string') put(t['content'], t['id'], t['special'] === true ? TokenType.control : TokenType.userDefined);
  }
  const gap = pieces.findIndex((p) => p === undefined);
  if (gap >= 0) fail(source, `no token has id ${gap} (the model has ${vocabSize} tokens)`);
  return { pieces: pieces as string[], types };
}

/** Merges as "left right" strings, highest priority first. */
function mergesOf(source: TokenizerJsonSource, model: Json): string[] {
  const merges = model['merges'] ?? [];
  if (!Array.isArray(merges)) fail(source, 'model.merges is not a list');
  return merges.map((m) => {
    if (typeof m === 'string') return m;
    if (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === 'string')) {
      if (m.some((x: string) => x.includes(' '))) fail(source, `merge ${JSON.stringify(m)} has a space inside a piece, which GGUF's "left right" merges cannot hold`);
      return `${m[0]} ${m[1]}`;
    }
    return fail(source, `merge ${JSON.stringify(m)} is neither "left right" nor [left, right]`);
  });
}

/** Whether the normalizer or pre-tokenizer puts '▁' before the text (sentencepiece's dummy prefix). */
function addsDummyPrefix(json: Json): boolean {
  const nodes: unknown[] = [json['normalizer'], json['pre_tokenizer']];
  for (let k = 0; k < nodes.length; k++) {
    const n = nodes[k];
    if (!isObject(n)) continue;
    for (const key of ['normalizers', 'pretokenizers']) if (Array.isArray(n[key])) nodes.push(...(n[key] as unknown[]));
    if (n['type'] === 'Prepend' && n['prepend'] === SPACE_MARK) return true;
    if (n['type'] === 'Metaspace') return n['prepend_scheme'] === 'always' || n['prepend_scheme'] === 'first' || n['add_prefix_space'] === true;
  }
  return false;
}

function toScoredVocab(source: TokenizerJsonSource, model: Json, spec: ModelSpec): ScoredVocabSource {
  const { pieces, types } = piecesOf(source, model, spec.vocabSize);
  const merges = mergesOf(source, model);
  const ids = new Map<string, number>();
  pieces.forEach((p, id) => ids.has(p) || ids.set(p, id));
  const scores = pieces.map(() => -(merges.length + 1));
  const made = new Set<number>();
  merges.forEach((m, rank) => {
    const id = ids.get(m.replace(' ', ''));
    if (id !== undefined && !made.has(id)) {
      made.add(id);
      scores[id] = -rank;
    }
  });
  pieces.forEach((p, id) => {
    if (types[id] === TokenType.normal && parseBytePiece(p) !== undefined) types[id] = TokenType.byte;
  });
  const unk = typeof model['unk_token'] === 'string' ? ids.get(model['unk_token']) : undefined;
  if (unk !== undefined) types[unk] = TokenType.unknown;
  const out: ScoredVocabSource = {
    kind: 'scored-vocab',
    pieces,
    scores,
    types,
    bosTokenId: spec.bosTokenId,
    eosTokenIds: spec.eosTokenIds,
    addDummyPrefix: addsDummyPrefix(source.json as Json),
    origin: source.origin,
  };
  if (unk !== undefined) out.unkTokenId = unk;
  return out;
}

/** llama.cpp's `tokenizer.ggml.pre` for a byte-level pre-tokenizer, or undefined when it has none. */
function preTokenizerName(pre: unknown): string | undefined {
  if (!isObject(pre)) return undefined;
  if (pre['type'] === 'ByteLevel' && pre['use_regex'] !== false) return 'gpt-2';
  const steps = pre['type'] === 'Sequence' && Array.isArray(pre['pretokenizers']) ? (pre['pretokenizers'] as unknown[]) : [];
  const split = steps.find((s): s is Json => isObject(s) && s['type'] === 'Split');
  const regex = split && isObject(split['pattern']) ? split['pattern']['Regex'] : undefined;
  const byteLevel = steps.some((s) => isObject(s) && s['type'] === 'ByteLevel' && s['use_regex'] === false);
  if (steps.length !== 2 || !byteLevel) return undefined;
  return regex === LLAMA3_SPLIT ? 'llama-bpe' : regex === QWEN2_SPLIT ? 'qwen2' : undefined;
}

function toByteBpe(source: TokenizerJsonSource, model: Json, spec: ModelSpec): ByteBpeSource {
  const json = source.json as Json;
  const pre = preTokenizerName(json['pre_tokenizer']);
  if (pre === undefined) {
    fail(source, `its pre-tokenizer is not one llama.cpp names (GPT-2's ByteLevel, LLaMA-3's or Qwen2's split regex), so llama.cpp would split text differently; export --format hf instead`);
  }
  const { pieces, types } = piecesOf(source, model, spec.vocabSize);
  return { kind: 'byte-bpe', pieces, merges: mergesOf(source, model), types, bosTokenId: spec.bosTokenId, eosTokenIds: spec.eosTokenIds, preTokenizer: pre, origin: source.origin };
}

/** The scored-vocab or byte-BPE form of any tokenizer we load (tokenizer.json converted, see above). */
export function ggufTokenizerSource(source: TokenizerSource, spec: ModelSpec): ScoredVocabSource | ByteBpeSource {
  if (source.kind !== 'tokenizer.json') return source;
  const model = isObject(source.json) ? source.json['model'] : undefined;
  if (!isObject(model) || model['type'] !== 'BPE') fail(source, `model type ${JSON.stringify(isObject(model) ? model['type'] : model)} cannot be written to GGUF (supported: BPE)`);
  return model['byte_fallback'] === true ? toScoredVocab(source, model, spec) : toByteBpe(source, model, spec);
}

const u32 = (value: number): GgufKv => ({ type: GgufType.UINT32, value });
const str = (value: string): GgufKv => ({ type: GgufType.STRING, value });
const bool = (value: boolean): GgufKv => ({ type: GgufType.BOOL, value });
const arr = (itemType: number, value: GgufValue[]): GgufKv => ({ type: GgufType.ARRAY, itemType, value });

/** Add `tokenizer.ggml.*` (and the chat template) for `source` to `md`. */
export function setTokenizerMetadata(md: Map<string, GgufKv>, source: TokenizerSource, spec: ModelSpec, chatTemplate: string | undefined): void {
  const tok = ggufTokenizerSource(source, spec);
  if (tok.pieces.length !== spec.vocabSize) {
    throw new ModelFormatError(`GGUF writer: tokenizer ${tok.origin} has ${tok.pieces.length} tokens but the model has vocab_size ${spec.vocabSize}`);
  }
  md.set('tokenizer.ggml.model', str(tok.kind === 'scored-vocab' ? 'llama' : 'gpt2'));
  if (tok.kind === 'byte-bpe') md.set('tokenizer.ggml.pre', str(tok.preTokenizer ?? 'default'));
  md.set('tokenizer.ggml.tokens', arr(GgufType.STRING, tok.pieces));
  if (tok.kind === 'scored-vocab') md.set('tokenizer.ggml.scores', arr(GgufType.FLOAT32, tok.scores));
  md.set('tokenizer.ggml.token_type', arr(GgufType.INT32, tok.types));
  if (tok.kind === 'byte-bpe') md.set('tokenizer.ggml.merges', arr(GgufType.STRING, tok.merges));
  md.set('tokenizer.ggml.bos_token_id', u32(spec.bosTokenId));
  md.set('tokenizer.ggml.eos_token_id', u32(spec.eosTokenIds[0]!)); // GGUF has one EOS key; llama.cpp finds other end tokens by their text
  if (tok.kind === 'scored-vocab' && tok.unkTokenId !== undefined) md.set('tokenizer.ggml.unknown_token_id', u32(tok.unkTokenId));
  if (tok.kind === 'scored-vocab') md.set('tokenizer.ggml.add_space_prefix', bool(tok.addDummyPrefix));
  md.set('tokenizer.ggml.add_bos_token', bool(true));
  md.set('tokenizer.ggml.add_eos_token', bool(false));
  if (chatTemplate !== undefined) md.set('tokenizer.chat_template', str(chatTemplate));
}
