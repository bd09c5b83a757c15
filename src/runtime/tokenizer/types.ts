/**
 * What a checkpoint says about its tokenizer, before a Tokenizer is built from it. Model readers
 * produce one of these; `createTokenizer` (tokenizer/create.ts) turns it into a Tokenizer.
 */
export type TokenizerSource = ScoredVocabSource | ByteBpeSource | TokenizerJsonSource;

/** GGUF token types (llama.cpp's llama_token_type); llama2.c vocabularies are inferred into these. */
export const TokenType = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

/**
 * A sentencepiece-style vocabulary with merge scores (llama2.c `tokenizer.bin`, GGUF
 * `tokenizer.ggml.model = "llama"`). Pieces use '▁' (U+2581) for a space; byte-fallback pieces
 * look like `<0x0A>`.
 */
export interface ScoredVocabSource {
  kind: 'scored-vocab';
  pieces: string[];
  scores: number[];
  /** One TokenType per piece. */
  types: number[];
  bosTokenId: number;
  eosTokenIds: number[];
  unkTokenId?: number;
  /** Prepend '▁' to non-empty text before encoding (sentencepiece's add_dummy_prefix). */
  addDummyPrefix: boolean;
  /** Where it came from, for error messages. */
  origin: string;
}

/** A GPT-2 style byte-level BPE (GGUF `tokenizer.ggml.model = "gpt2"`, e.g. LLaMA-3). */
export interface ByteBpeSource {
  kind: 'byte-bpe';
  /** Pieces in GPT-2 byte-to-unicode form. */
  pieces: string[];
  /** Merges as "a b" strings, highest priority first. */
  merges: string[];
  types: number[];
  bosTokenId: number;
  eosTokenIds: number[];
  /** GGUF `tokenizer.ggml.pre` (e.g. "llama-bpe"), selects the pre-tokenizer regex. */
  preTokenizer?: string;
  origin: string;
}

/** A Hugging Face `tokenizer.json` (+ optional `tokenizer_config.json`). */
export interface TokenizerJsonSource {
  kind: 'tokenizer.json';
  json: unknown;
  config?: unknown;
  origin: string;
}

/** Incremental detokenizer: never emits a broken multi-byte character. */
export interface StreamDecoder {
  /** Feed one token; returns the text that is now complete (possibly ''). */
  push(id: number): string;
  /** Text still held back (an incomplete UTF-8 tail is rendered with U+FFFD). */
  flush(): string;
}

export interface EncodeOptions {
  /**
   * Prepend the BOS token (default true when the tokenizer has one). Added once: not again when
   * the text itself starts with the BOS token.
   */
  addBos?: boolean;
}

/**
 * A stretch of text to encode. In a `parse` span a special token's text (`<s>`, `</s>`,
 * `<|im_start|>`…) is that control token, as vLLM and llama.cpp read a raw prompt; in a `text` span
 * it is ordinary text, as a chat message's content must be.
 */
export interface TextSpan {
  text: string;
  specialTokens: 'parse' | 'text';
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenIds: readonly number[];
  /** The texts that are control tokens in a `parse` span (BOS, EOS, `<|im_start|>`…), no empty one. */
  readonly specialTokenTexts: readonly string[];
  /**
   * Token ids for a text (one `parse` span), or for spans encoded as their concatenation: spans
   * never force a token boundary; they only say where a special token's text may be that token
   * (only wholly inside `parse` text; adjacent `parse` spans count as one).
   */
  encode(text: string | readonly TextSpan[], options?: EncodeOptions): number[];
  /** Whole-sequence decode; control tokens (BOS/EOS...) produce no text. */
  decode(ids: readonly number[]): string;
  /** The bytes a token contributes to the output text (empty for control tokens). */
  tokenBytes(id: number): Uint8Array;
  /** Human-readable form of one token, for logprobs (may contain U+FFFD for partial bytes). */
  tokenText(id: number): string;
  /**
   * A streaming decoder for text that follows `previous` (the last prompt token). Sentencepiece
   * vocabularies drop the dummy-prefix space of the first piece only when it follows BOS or nothing.
   */
  createDecoder(previous?: number): StreamDecoder;
}

export class TokenizerError extends Error {
  override name = 'TokenizerError';
}
