import { isNormalTokenType, SPACE_MARK } from './scored-vocab.ts';
import { TokenizerError, TokenType } from './types.ts';
import type { ScoredVocabSource } from './types.ts';

/** The two files a Hugging Face model directory needs for its tokenizer. */
export interface HfTokenizerFiles {
  /** Contents of tokenizer.json. */
  tokenizerJson: Record<string, unknown>;
  /** Contents of tokenizer_config.json. */
  tokenizerConfig: Record<string, unknown>;
}

/**
 * Converts a sentencepiece-BPE scored vocabulary into tokenizer.json + tokenizer_config.json the way
 * transformers' LlamaConverter does (legacy layout: Prepend/Replace normalizer, BPE with byte
 * fallback, Replace/ByteFallback/Fuse/Strip decoder), so `transformers` / `tokenizers` load it as a
 * LlamaTokenizerFast that encodes exactly like the scored-vocab tokenizer.
 */
export function scoredVocabToHfTokenizer(source: ScoredVocabSource): HfTokenizerFiles {
  const { pieces, scores, types, origin } = source;
  if (scores.length !== pieces.length || types.length !== pieces.length) {
    throw new TokenizerError(`${origin}: vocabulary arrays disagree in length`);
  }
  const pieceOf = (id: number | undefined): string | null => (id === undefined ? null : (pieces[id] ?? null));

  // A JSON object cannot hold a piece twice; the first id wins, as in the scored-vocab tokenizer.
  // Null prototype: a piece may well be spelled "__proto__".
  const vocab = Object.create(null) as Record<string, number>;
  for (let id = 0; id < pieces.length; id++) {
    if (!Object.hasOwn(vocab, pieces[id]!)) vocab[pieces[id]!] = id;
  }
  const added = addedTokens(source, vocab);
  const special = { bos: pieceOf(source.bosTokenId), eos: pieceOf(source.eosTokenIds[0]), unk: pieceOf(source.unkTokenId) };
  return { tokenizerJson: tokenizerJsonOf(source, vocab, added, special), tokenizerConfig: tokenizerConfigOf(added, special) };
}

/** The pieces of the BOS, first EOS and unknown tokens (null where the vocabulary has none). */
interface SpecialPieces {
  bos: string | null;
  eos: string | null;
  unk: string | null;
}

/** tokenizer.json's added_tokens: as LlamaConverter, control (and unk) pieces are special added tokens, user-defined ones plain. */
function addedTokens(source: ScoredVocabSource, vocab: Record<string, number>): Record<string, unknown>[] {
  const { pieces, types } = source;
  const added: Record<string, unknown>[] = [];
  for (let id = 0; id < pieces.length; id++) {
    const type = types[id];
    if (type !== TokenType.control && type !== TokenType.unknown && type !== TokenType.userDefined) continue;
    if (vocab[pieces[id]!] !== id) continue;
    added.push({
      id,
      content: pieces[id],
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: type !== TokenType.userDefined,
    });
  }
  return added;
}

function tokenizerJsonOf(source: ScoredVocabSource, vocab: Record<string, number>, added_tokens: Record<string, unknown>[], { bos, unk }: SpecialPieces): Record<string, unknown> {
  const merges = deriveMerges(source, vocab);
  // Pieces never contain ' ' (it is '▁'), so the compact "left right" form is unambiguous; fall back
  // to the pair form (tokenizers >= 0.20) only if one does.
  const mergesJson = merges.some(([l, r]) => l.includes(' ') || r.includes(' '))
    ? merges
    : merges.map(([l, r]) => `${l} ${r}`);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens,
    normalizer: {
      type: 'Sequence',
      normalizers: [
        ...(source.addDummyPrefix ? [{ type: 'Prepend', prepend: SPACE_MARK }] : []),
        { type: 'Replace', pattern: { String: ' ' }, content: SPACE_MARK },
      ],
    },
    pre_tokenizer: null,
    post_processor:
      bos === null
        ? null
        : bosTemplateProcessor(bos, source.bosTokenId),
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE_MARK }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(source.addDummyPrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: mergesJson,
    },
  };
}

function tokenizerConfigOf(added_tokens: Record<string, unknown>[], { bos, eos, unk }: SpecialPieces): Record<string, unknown> {
  const added_tokens_decoder: Record<string, unknown> = {};
  for (const t of added_tokens) {
    const { id, ...rest } = t;
    added_tokens_decoder[String(id)] = rest;
  }
  return {
    add_bos_token: bos !== null,
    add_eos_token: false,
    added_tokens_decoder,
    bos_token: bos,
    eos_token: eos,
    unk_token: unk,
    pad_token: null,
    clean_up_tokenization_spaces: false,
    // The Prepend/Replace normalizer above is transformers' "legacy" Llama layout. (No
    // add_prefix_space key: LlamaTokenizerFast would then insist on rebuilding from a .model file.)
    legacy: true,
    sp_model_kwargs: {},
    tokenizer_class: 'LlamaTokenizer',
  };
}

/**
 * BPE merges from a scored vocabulary (transformers' SentencePieceExtractor): every split of a
 * piece into two pieces gives a merge, ranked by the merged piece's score, highest first; ties by
 * merged id, then by the ids of the two halves. Only normal pieces merge or are merged, matching
 * the scored-vocab tokenizer (byte, control and unknown pieces never come from merging text).
 */
function deriveMerges(source: ScoredVocabSource, vocab: Record<string, number>): [string, string][] {
  const { pieces, scores, types } = source;
  const isNormal = (piece: string): boolean => {
    const id = vocab[piece];
    return id !== undefined && isNormalTokenType(types[id]);
  };
  const found: { left: string; right: string; score: number; id: number; l: number; r: number }[] = [];
  for (let id = 0; id < pieces.length; id++) {
    const piece = pieces[id]!;
    if (!isNormalTokenType(types[id]) || vocab[piece] !== id) continue;
    const chars = Array.from(piece);
    let offset = 0;
    for (let k = 1; k < chars.length; k++) {
      offset += chars[k - 1]!.length;
      const left = piece.slice(0, offset);
      const right = piece.slice(offset);
      if (isNormal(left) && isNormal(right)) {
        found.push({ left, right, score: scores[id]!, id, l: vocab[left]!, r: vocab[right]! });
      }
    }
  }
  found.sort((a, b) => b.score - a.score || a.id - b.id || a.l - b.l || a.r - b.r);
  return found.map((m) => [m.left, m.right]);
}

/** tokenizer.json's post-processor that puts BOS before each sequence (as LLaMA tokenizers do). */
export function bosTemplateProcessor(bos: string, bosTokenId: number): Record<string, unknown> {
  return {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [
      { SpecialToken: { id: bos, type_id: 0 } },
      { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: bos, type_id: 1 } },
      { Sequence: { id: 'B', type_id: 1 } },
    ],
    special_tokens: { [bos]: { id: bos, ids: [bosTokenId], tokens: [bos] } },
  };
}
