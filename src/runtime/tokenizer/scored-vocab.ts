import { ByteDecodedTokenizer, EMPTY_BYTES } from './byte-decoded-tokenizer.ts';
import type { ByteStreamOptions } from './stream-decoder.ts';
import { type LiteralToken, LiteralTokenSplitter, normalizeSpans } from './text-spans.ts';
import { TokenizerError, TokenType } from './types.ts';
import type { EncodeOptions, ScoredVocabSource, TextSpan, Tokenizer } from './types.ts';

/** Sentencepiece's visible space. */
export const SPACE_MARK = '\u2581';

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/** The byte a `<0xNN>` byte-fallback piece stands for, or undefined. */
export function parseBytePiece(piece: string): number | undefined {
  const m = BYTE_PIECE.exec(piece);
  return m ? parseInt(m[1]!, 16) : undefined;
}

/**
 * Whether a token type is ordinary text that merges may produce. Anything not explicitly byte,
 * control, unknown, unused or user-defined counts (GGUF's "undefined" type 0 included).
 */
export function isNormalTokenType(type: number | undefined): boolean {
  return (
    type !== TokenType.byte &&
    type !== TokenType.control &&
    type !== TokenType.unknown &&
    type !== TokenType.unused &&
    type !== TokenType.userDefined
  );
}

/** Bound on memoised symbol pairs, so a long-running server's cache cannot grow without limit. */
const PAIR_CACHE_LIMIT = 1 << 20;

const utf8 = new TextEncoder();

/**
 * Sentencepiece-BPE tokenizer over a scored vocabulary, with the semantics of llama2.c's `encode`
 * and llama.cpp's SPM tokenizer: the text (with a dummy '▁' prefix, spaces as '▁') starts as one
 * symbol per character, characters missing from the vocabulary become `<0xNN>` byte pieces, then
 * the adjacent pair whose concatenation is the highest-scoring piece is merged (ties: leftmost)
 * until no pair merges.
 */
export class ScoredVocabTokenizer extends ByteDecodedTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenIds: readonly number[];
  readonly specialTokenTexts: readonly string[];

  private readonly pieces: readonly string[];
  private readonly scores: readonly number[];
  private readonly addDummyPrefix: boolean;
  private readonly unkTokenId: number | undefined;
  /** Pieces that merges may produce or consume: normal text pieces only (first id wins on duplicates). */
  private readonly mergeable = new Map<string, number>();
  private readonly isMergeable: Uint8Array;
  /** UTF-16 code unit -> id of the normal piece that is exactly that character, or -1 (fast path). */
  private readonly charIds = new Int32Array(0x10000).fill(-1);
  /** (left id * vocabSize + right id) -> merged id or -1; bounded by the pairs texts actually contain. */
  private readonly pairCache = new Map<number, number>();
  private readonly maxMergeableLength: number;
  /** byte value -> id of its `<0xNN>` piece (-1 when the vocabulary lacks it). */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /**
   * Pieces matched whole in the raw text before BPE, as llama.cpp partitions them out: user-defined
   * pieces always, control and unknown ones (BOS, EOS, `<unk>`) in `parse` spans only.
   */
  private readonly literalTokens: LiteralTokenSplitter;
  protected override readonly bytes: Uint8Array[];
  protected override readonly stream: ByteStreamOptions;

  constructor(source: ScoredVocabSource) {
    super();
    const { pieces, scores, types, origin } = source;
    if (pieces.length === 0) throw new TokenizerError(`${origin}: the vocabulary is empty`);
    if (scores.length !== pieces.length || types.length !== pieces.length) {
      throw new TokenizerError(
        `${origin}: vocabulary arrays disagree (${pieces.length} pieces, ${scores.length} scores, ${types.length} types)`,
      );
    }
    const inRange = (id: number | undefined): id is number =>
      id !== undefined && Number.isInteger(id) && id >= 0 && id < pieces.length;
    for (const [what, id] of [
      ['BOS', source.bosTokenId],
      ['unk', source.unkTokenId],
      ...source.eosTokenIds.map((id) => ['EOS', id] as const),
    ] as const) {
      if (id !== undefined && !inRange(id)) {
        throw new TokenizerError(`${origin}: ${what} token id ${id} is outside the vocabulary (${pieces.length} pieces)`);
      }
    }

    this.vocabSize = pieces.length;
    this.bosTokenId = source.bosTokenId;
    this.eosTokenIds = [...source.eosTokenIds];
    this.unkTokenId = source.unkTokenId;
    this.pieces = pieces;
    this.scores = scores;
    this.addDummyPrefix = source.addDummyPrefix;

    let maxLen = 0;
    this.isMergeable = new Uint8Array(pieces.length);
    const literal: LiteralToken[] = [];
    this.bytes = pieces.map((piece, id) => {
      const type = types[id];
      if (type === TokenType.byte) {
        const b = parseBytePiece(piece);
        if (b === undefined) throw new TokenizerError(`${origin}: byte token ${id} has malformed piece ${JSON.stringify(piece)}`);
        if (this.byteIds[b] === -1) this.byteIds[b] = id;
        return Uint8Array.of(b);
      }
      if (isNormalTokenType(type)) {
        if (!this.mergeable.has(piece)) {
          this.mergeable.set(piece, id);
          this.isMergeable[id] = 1;
        }
        maxLen = Math.max(maxLen, piece.length);
      } else if (type === TokenType.userDefined) {
        literal.push({ text: piece.replaceAll(SPACE_MARK, ' '), id, control: false });
      } else {
        // Control, unknown and unused tokens are not text.
        if (type === TokenType.control || type === TokenType.unknown) literal.push({ text: piece, id, control: true });
        return EMPTY_BYTES;
      }
      return utf8.encode(piece.replaceAll(SPACE_MARK, ' '));
    });
    this.maxMergeableLength = maxLen;
    for (const [piece, id] of this.mergeable) {
      const unit = piece.charCodeAt(0);
      if (piece.length === 1 && (unit < 0xd800 || unit >= 0xe000)) this.charIds[unit] = id;
    }
    // First id wins on duplicate texts, as for mergeable pieces.
    const seen = new Set<string>();
    const unique = literal.filter((t) => t.text.length > 0 && !seen.has(t.text) && seen.add(t.text));
    this.literalTokens = new LiteralTokenSplitter(unique);
    this.specialTokenTexts = unique.filter((t) => t.control).map((t) => t.text);

    this.stream = {
      tokenBytes: (id) => this.tokenBytes(id),
      stripFirstSpace: this.addDummyPrefix,
      bosTokenId: this.bosTokenId,
    };
  }

  encode(text: string | readonly TextSpan[], options?: EncodeOptions): number[] {
    const ids: number[] = [];
    // As llama.cpp: each run of text gets the dummy prefix when it starts the text or follows a
    // matched token; an empty text encodes to nothing.
    let prefix = true;
    for (const fragment of this.literalTokens.split(normalizeSpans(text))) {
      if (typeof fragment === 'number') {
        ids.push(fragment);
        prefix = true;
      } else {
        this.encodeRun(fragment, prefix, ids);
        prefix = false;
      }
    }
    const bos = this.bosTokenId;
    if ((options?.addBos ?? true) && bos !== undefined && ids[0] !== bos) ids.unshift(bos);
    return ids;
  }

  protected override tokenName(id: number): string {
    return this.pieces[id] ?? '';
  }

  /** The piece two adjacent symbols merge into, or -1 (memoised per id pair). */
  private mergeOf(a: number, b: number): number {
    const key = a * this.vocabSize + b;
    let merged = this.pairCache.get(key);
    if (merged === undefined) {
      merged = -1;
      // Only normal pieces take part in merges (byte/unk symbols never combine).
      if (this.isMergeable[a] === 1 && this.isMergeable[b] === 1) {
        const pa = this.pieces[a]!;
        const pb = this.pieces[b]!;
        if (pa.length + pb.length <= this.maxMergeableLength) merged = this.mergeable.get(pa + pb) ?? -1;
      }
      if (this.pairCache.size >= PAIR_CACHE_LIMIT) this.pairCache.clear();
      this.pairCache.set(key, merged);
    }
    return merged;
  }

  /** BPE-encodes one run of plain text, appending to `out`. */
  private encodeRun(text: string, dummyPrefix: boolean, out: number[]): void {
    const normalized = (dummyPrefix && this.addDummyPrefix ? SPACE_MARK : '') + text.replaceAll(' ', SPACE_MARK);

    // Symbols as a doubly linked list over parallel arrays; merging keeps the left symbol.
    // At most 3 UTF-8 bytes per UTF-16 code unit, hence at most 3 initial symbols per unit.
    const tok = new Int32Array(normalized.length * 3);
    let n = 0;
    for (let i = 0; i < normalized.length; i++) {
      const unit = normalized.charCodeAt(i);
      let ch: string;
      if (unit >= 0xd800 && unit < 0xdc00 && i + 1 < normalized.length) {
        const low = normalized.charCodeAt(i + 1);
        ch = low >= 0xdc00 && low < 0xe000 ? normalized.slice(i, ++i + 1) : normalized[i]!;
        const id = this.mergeable.get(ch);
        if (id !== undefined) {
          tok[n++] = id;
          continue;
        }
      } else {
        const id = this.charIds[unit]!;
        if (id >= 0) {
          tok[n++] = id;
          continue;
        }
        ch = normalized[i]!;
      }
      for (const b of utf8.encode(ch)) {
        const byteId = this.byteIds[b]!;
        if (byteId >= 0) tok[n++] = byteId;
        else if (this.unkTokenId !== undefined) tok[n++] = this.unkTokenId;
        else {
          throw new TokenizerError(
            `cannot encode ${JSON.stringify(ch)}: not in the vocabulary, which has neither byte pieces nor an unknown token`,
          );
        }
      }
    }
    // Merges never cross a byte/unk symbol, so each run of normal pieces between them is merged
    // on its own: same result, and small queues stay cache-friendly on long texts.
    const links = { next: new Int32Array(n), prev: new Int32Array(n), version: new Int32Array(n) };
    const queue = new MergeQueue();
    let start = 0;
    while (start < n) {
      if (this.isMergeable[tok[start]!] !== 1) {
        out.push(tok[start++]!);
        continue;
      }
      let end = start + 1;
      while (end < n && this.isMergeable[tok[end]!] === 1) end++;
      this.mergeRun(tok, start, end, links, queue, out);
      start = end;
    }
  }

  /** Repeatedly merges the best adjacent pair of symbols tok[start..end), appending the result. */
  private mergeRun(
    tok: Int32Array,
    start: number,
    end: number,
    links: { next: Int32Array; prev: Int32Array; version: Int32Array },
    queue: MergeQueue,
    out: number[],
  ): void {
    // Symbols form a doubly linked list; a merge keeps the left symbol and unlinks the right one.
    const { next, prev, version } = links;
    for (let i = start; i < end; i++) {
      next[i] = i + 1 < end ? i + 1 : -1;
      prev[i] = i > start ? i - 1 : -1;
    }
    const consider = (left: number, right: number): void => {
      const merged = this.mergeOf(tok[left]!, tok[right]!);
      if (merged >= 0) queue.push(this.scores[merged]!, left, right, merged, version[left]!, version[right]!);
    };
    for (let i = start; i + 1 < end; i++) consider(i, i + 1);

    while (queue.size > 0) {
      const e = queue.popIndex();
      const left = queue.left[e]!;
      const right = queue.right[e]!;
      // Stale entry: a side was merged away or changed since it was queued.
      if (next[left] !== right || version[left] !== queue.leftVersion[e] || version[right] !== queue.rightVersion[e]) {
        continue;
      }
      tok[left] = queue.merged[e]!;
      version[left]!++;
      version[right] = -1;
      const after = next[right]!;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      if (prev[left]! >= 0) consider(prev[left]!, left);
      if (after >= 0) consider(left, after);
    }
    // The first symbol is never the right side of a merge, so it heads the list.
    for (let i = start; i >= 0; i = next[i]!) out.push(tok[i]!);
  }
}

/**
 * Binary max-heap of merge candidates (highest score first, then leftmost), stored as parallel
 * growable arrays so that a long text does not allocate an object per candidate.
 */
class MergeQueue {
  score = new Float64Array(1024);
  left = new Int32Array(1024);
  right = new Int32Array(1024);
  merged = new Int32Array(1024);
  leftVersion = new Int32Array(1024);
  rightVersion = new Int32Array(1024);
  /** Heap of candidate slots; popped slots are recycled. */
  private heap = new Int32Array(1024);
  private free: number[] = [];
  private count = 0;
  private slots = 0;

  get size(): number {
    return this.count;
  }

  push(score: number, left: number, right: number, merged: number, leftVersion: number, rightVersion: number): void {
    let slot = this.free.pop();
    if (slot === undefined) {
      if (this.slots === this.score.length) this.grow();
      slot = this.slots++;
    }
    this.score[slot] = score;
    this.left[slot] = left;
    this.right[slot] = right;
    this.merged[slot] = merged;
    this.leftVersion[slot] = leftVersion;
    this.rightVersion[slot] = rightVersion;
    const heap = this.heap;
    let i = this.count++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(slot, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = slot;
  }

  /** Removes the best candidate; its slot stays readable until the next push. */
  popIndex(): number {
    const heap = this.heap;
    const top = heap[0]!;
    const last = heap[--this.count]!;
    const n = this.count;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const child = r < n && this.before(heap[r]!, heap[l]!) ? r : l;
        if (!this.before(heap[child]!, last)) break;
        heap[i] = heap[child]!;
        i = child;
      }
      heap[i] = last;
    }
    this.free.push(top);
    return top;
  }

  private before(a: number, b: number): boolean {
    const sa = this.score[a]!;
    const sb = this.score[b]!;
    return sa > sb || (sa === sb && this.left[a]! < this.left[b]!);
  }

  private grow(): void {
    const size = this.score.length * 2;
    const grow32 = (old: Int32Array) => {
      const a = new Int32Array(size);
      a.set(old);
      return a;
    };
    const score = new Float64Array(size);
    score.set(this.score);
    this.score = score;
    this.left = grow32(this.left);
    this.right = grow32(this.right);
    this.merged = grow32(this.merged);
    this.leftVersion = grow32(this.leftVersion);
    this.rightVersion = grow32(this.rightVersion);
    this.heap = grow32(this.heap);
  }
}
