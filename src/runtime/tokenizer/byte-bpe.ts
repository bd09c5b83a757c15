import { bosTemplateProcessor } from './from-scored-vocab.ts';
import { TokenizerJsonTokenizer } from './tokenizer-json.ts';
import { TokenizerError, TokenType } from './types.ts';
import type { ByteBpeSource, Tokenizer } from './types.ts';

/** Split regexes of the GGUF `tokenizer.ggml.pre` values we know (llama.cpp's llama-vocab.cpp). */
export const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
export const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface PreTokenizerChoice {
  preTokenizer: Record<string, unknown>;
  /** LLaMA-3 keeps whole-vocabulary words unmerged (its tokenizer.json sets ignore_merges). */
  ignoreMerges: boolean;
  /** llama.cpp's default add_bos for this pre-tokenizer (the source carries no add_bos flag). */
  addBos: boolean;
}

const splitThenBytes = (regex: string): Record<string, unknown> => ({
  type: 'Sequence',
  pretokenizers: [
    { type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
  ],
});

function choosePreTokenizer(source: ByteBpeSource): PreTokenizerChoice {
  switch (source.preTokenizer) {
    case undefined:
    case 'default':
    case 'gpt2':
    case 'gpt-2':
      // GPT-2's own regex is built into the ByteLevel pre-tokenizer.
      return {
        preTokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
        ignoreMerges: false,
        addBos: false,
      };
    case 'llama-bpe':
    case 'llama3':
    case 'llama-v3':
      return { preTokenizer: splitThenBytes(LLAMA3_SPLIT), ignoreMerges: true, addBos: true };
    case 'qwen2':
      return { preTokenizer: splitThenBytes(QWEN2_SPLIT), ignoreMerges: false, addBos: false };
    default:
      throw new TokenizerError(
        `${source.origin}: byte-level BPE pre-tokenizer "${source.preTokenizer}" is not supported (supported: gpt2/default, llama-bpe, qwen2)`,
      );
  }
}

/**
 * Expresses a GGUF-style byte-level BPE vocabulary as a tokenizer.json (+ tokenizer_config.json),
 * so that encoding goes through the same library-backed path as Hugging Face checkpoints instead
 * of a second hand-written GPT-2 BPE.
 */
export function byteBpeToTokenizerJson(source: ByteBpeSource): {
  json: Record<string, unknown>;
  config: Record<string, unknown>;
} {
  const { pieces, types, origin } = source;
  if (types.length !== pieces.length) {
    throw new TokenizerError(`${origin}: ${pieces.length} pieces but ${types.length} token types`);
  }
  const choice = choosePreTokenizer(source);
  // Null prototype: a piece may well be spelled "__proto__". First id wins on duplicates.
  const vocab = Object.create(null) as Record<string, number>;
  pieces.forEach((piece, id) => {
    if (!Object.hasOwn(vocab, piece)) vocab[piece] = id;
  });
  const added_tokens = pieces.flatMap((content, id) => {
    const type = types[id];
    const special = type === TokenType.control || type === TokenType.unknown;
    if ((!special && type !== TokenType.userDefined) || vocab[content] !== id) return [];
    return [{ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special }];
  });

  const bos = pieces[source.bosTokenId];
  const eos = source.eosTokenIds.length > 0 ? pieces[source.eosTokenIds[0]!] : undefined;
  const json: Record<string, unknown> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens,
    normalizer: null,
    pre_tokenizer: choice.preTokenizer,
    post_processor:
      bos !== undefined && choice.addBos
        ? bosTemplateProcessor(bos, source.bosTokenId)
        : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: choice.ignoreMerges,
      vocab,
      merges: source.merges,
    },
  };
  const config: Record<string, unknown> = {
    add_bos_token: bos !== undefined && choice.addBos,
    bos_token: bos ?? null,
    eos_token: eos ?? null,
    clean_up_tokenization_spaces: false,
  };
  return { json, config };
}

/** A Tokenizer for a byte-level BPE source, backed by the tokenizer.json path. */
export function createByteBpeTokenizer(source: ByteBpeSource): Tokenizer {
  const { json, config } = byteBpeToTokenizerJson(source);
  return new TokenizerJsonTokenizer(
    { kind: 'tokenizer.json', json, config, origin: source.origin },
    { eosTokenIds: source.eosTokenIds },
  );
}
