import { randomBytes } from 'node:crypto';
import { type AddedToken, Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { type LiteralToken, LiteralTokenSplitter } from './text-spans.ts';
import { TokenizerError } from './types.ts';
import type { TextSpan } from './types.ts';

/** Private-use characters around a mask: no normalizer or pre-tokenizer touches them. */
const MASK_OPEN = '\uF8F0';
const MASK_CLOSE = '\uF8F1';

/**
 * tokenizer.json encoding where a special token's text is that token only inside `parse` spans.
 * @huggingface/tokenizers parses added tokens everywhere and has no switch for it (the Rust
 * library's `split_special_tokens`), so a second library tokenizer is built from the same json
 * with every special token renamed to a mask: a string private to this process (random, so a
 * client cannot write it). `parse` spans get their special tokens' texts replaced by the masks,
 * `text` spans go in as written, and the concatenation is encoded in one call: token boundaries,
 * prefix spaces and the pre-tokenizer's per-section rules stay exactly those of the whole text.
 */
export class SpecialTokenMasking {
  private readonly hf: HfTokenizer;
  /** Finds the added tokens the library would split out of raw text (specials in `parse` spans only). */
  private readonly splitter: LiteralTokenSplitter;
  /** Added token id -> what stands for it in the masked text: its mask, or a plain added token's own text. */
  private readonly textOf = new Map<number, string>();
  /** What every mask starts with; refused in input, where only a guess could put it. */
  private readonly maskPrefix: string;
  private readonly origin: string;

  /**
   * `added`: the original tokenizer's added tokens (as the library read them); `normalizes`:
   * whether it has a normalizer (added tokens marked `normalized` are then matched after it).
   */
  constructor(json: Record<string, unknown>, config: Record<string, unknown>, added: Iterable<AddedToken>, normalizes: boolean, origin: string) {
    this.origin = origin;
    this.maskPrefix = `${MASK_OPEN}${randomBytes(16).toString('hex')}:`;
    const renamed: Record<string, unknown>[] = [];
    const literal: LiteralToken[] = [];
    for (const t of added) {
      const fields = { id: t.id, single_word: t.single_word, lstrip: t.lstrip, rstrip: t.rstrip, special: t.special };
      if (t.special) {
        const mask = `${this.maskPrefix}${t.id}${MASK_CLOSE}`;
        this.textOf.set(t.id, mask);
        // Matched in raw text, where the mask was put (a normalized special token would otherwise
        // be looked for in the normalized text).
        renamed.push({ ...fields, content: mask, normalized: false });
        literal.push({ text: t.content, id: t.id, control: true });
      } else {
        this.textOf.set(t.id, t.content);
        renamed.push({ ...fields, content: t.content, normalized: t.normalized });
        // Only to split at the same places as the library; the library matches these itself.
        if (!(t.normalized && normalizes)) literal.push({ text: t.content, id: t.id, control: false });
      }
    }
    try {
      this.hf = new HfTokenizer({ ...json, added_tokens: renamed }, config);
    } catch (e) {
      throw new TokenizerError(`${origin}: cannot build the tokenizer that keeps special tokens' texts as text: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.splitter = new LiteralTokenSplitter(literal);
  }

  /** Ids for spans (normalized: non-empty, adjacent kinds differ); undefined where the vocabulary has no piece and no unknown token. */
  encode(spans: readonly TextSpan[]): (number | undefined)[] {
    for (const span of spans) {
      if (span.text.includes(this.maskPrefix)) {
        throw new TokenizerError(`${this.origin}: the text contains this process's special-token mask`);
      }
    }
    let masked = '';
    for (const part of this.splitter.split(spans)) masked += typeof part === 'string' ? part : this.textOf.get(part)!;
    return this.hf.encode(masked, { add_special_tokens: false }).ids;
  }
}
