import type { TextSpan } from './types.ts';

/**
 * What `Tokenizer.encode` was given, as spans: a string is one `parse` span; empty spans are
 * dropped and adjacent spans of the same kind joined, so a special token's text split across them
 * is still found.
 */
export function normalizeSpans(text: string | readonly TextSpan[]): TextSpan[] {
  if (typeof text === 'string') return text.length > 0 ? [{ text, specialTokens: 'parse' }] : [];
  const out: TextSpan[] = [];
  for (const span of text) {
    if (span.text.length === 0) continue;
    const last = out[out.length - 1];
    if (last && last.specialTokens === span.specialTokens) last.text += span.text;
    else out.push({ text: span.text, specialTokens: span.specialTokens });
  }
  return out;
}

/** A token whose text is matched whole in the raw text before the rest is encoded. */
export interface LiteralToken {
  text: string;
  id: number;
  /** A control token: matched only in `parse` spans. Others (user-defined pieces) match anywhere. */
  control: boolean;
}

/**
 * Splits spans into text runs and token ids: at each position the longest literal token that
 * starts there and may match there wins (a control token only when it lies wholly inside one
 * `parse` span). Text runs are maximal, so they can cross span boundaries.
 */
export class LiteralTokenSplitter {
  /** First character -> the tokens starting with it, longest first. */
  private readonly byFirst = new Map<string, LiteralToken[]>();

  constructor(tokens: readonly LiteralToken[]) {
    for (const t of tokens) {
      if (t.text.length === 0) continue;
      const list = this.byFirst.get(t.text[0]!) ?? [];
      list.push(t);
      this.byFirst.set(t.text[0]!, list);
    }
    for (const list of this.byFirst.values()) list.sort((a, b) => b.text.length - a.text.length);
  }

  *split(spans: readonly TextSpan[]): Generator<string | number> {
    const text = spans.map((s) => s.text).join('');
    if (this.byFirst.size === 0) {
      if (text.length > 0) yield text;
      return;
    }
    let span = 0;
    let spanStart = 0;
    let start = 0;
    let i = 0;
    while (i < text.length) {
      while (i >= spanStart + spans[span]!.text.length) spanStart += spans[span++]!.text.length;
      const candidates = this.byFirst.get(text[i]!);
      const parseEnd = spans[span]!.specialTokens === 'parse' ? spanStart + spans[span]!.text.length : -1;
      const hit = candidates?.find((t) => (!t.control || i + t.text.length <= parseEnd) && text.startsWith(t.text, i));
      if (!hit) {
        i++;
        continue;
      }
      if (i > start) yield text.slice(start, i);
      yield hit.id;
      i += hit.text.length;
      start = i;
    }
    if (start < text.length) yield text.slice(start);
  }
}
