/**
 * What xgrammar needs to know of a model's tokenizer, built from our Tokenizer whatever its kind.
 *
 * xgrammar takes every token as a string plus a vocabulary type that says how to turn it into
 * bytes (`byte_fallback` for sentencepiece pieces like `▁the` / `<0x0A>`, `byte_level` for GPT-2
 * style, `raw`). Our tokenizers already know the exact bytes each token contributes to the output
 * (`tokenBytes`, the same bytes streaming decodes), for sentencepiece vocabularies, GGUF byte-level
 * BPE and tokenizer.json alike. So every kind is handed over the same way: each token's bytes
 * written in the GPT-2 byte-to-character alphabet with type `byte_level`, which xgrammar maps back
 * to exactly those bytes (partial UTF-8 bytes of byte-fallback tokens included). Control tokens
 * contribute no bytes, so xgrammar never allows them, except the stop tokens.
 */
import { BYTE_LEVEL_CHAR_TO_BYTE } from '../tokenizer/tokenizer-json.ts';
import type { Tokenizer } from '../tokenizer/types.ts';

export interface GrammarVocabulary {
  /** One string per logit (the model's vocabulary, which may be larger than the tokenizer's). */
  encodedVocab: string[];
  vocabType: 'byte_level';
  /** The tokens that end a generation (the tokenizer's EOS ids). */
  stopTokenIds: number[];
  /** Whether some token is exactly this one-byte text: a space, a newline. */
  producesAlone(char: string): boolean;
}

/** GPT-2's printable stand-in for every byte (bytes_to_unicode): the alphabet of byte_level vocabularies. */
const BYTE_CHARS: readonly string[] = (() => {
  const out: string[] = new Array(256);
  for (const [char, byte] of BYTE_LEVEL_CHAR_TO_BYTE) out[byte] = char;
  return out;
})();

function byteLevelText(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += BYTE_CHARS[b]!;
  return s;
}

/** `logitCount`: the model's vocabulary size (rows past the tokenizer's are tokens with no text). */
export function grammarVocabulary(tokenizer: Tokenizer, logitCount: number): GrammarVocabulary {
  const encodedVocab: string[] = new Array(logitCount);
  const singles = new Set<number>();
  for (let id = 0; id < logitCount; id++) {
    const bytes = id < tokenizer.vocabSize ? tokenizer.tokenBytes(id) : new Uint8Array(0);
    encodedVocab[id] = byteLevelText(bytes);
    if (bytes.length === 1) singles.add(bytes[0]!);
  }
  return {
    encodedVocab,
    vocabType: 'byte_level',
    stopTokenIds: [...tokenizer.eosTokenIds],
    producesAlone: (char) => char.length === 1 && singles.has(char.charCodeAt(0)),
  };
}
