/**
 * Test-only readers for the stories260K vocabulary: llama2.c's tok512.bin and the sentencepiece
 * tok512.model it was exported from, plus a literal port of llama2.c's O(n²) `encode` used as an
 * independent reference for the fast tokenizer.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TokenType } from '../../../src/runtime/tokenizer/types.ts';
import type { ScoredVocabSource } from '../../../src/runtime/tokenizer/types.ts';

export const TOK512_BIN = fileURLToPath(new URL('../../../models/stories260K/tok512.bin', import.meta.url));
export const TOK512_MODEL = fileURLToPath(new URL('../../../models/stories260K/tok512.model', import.meta.url));
/** Two bundled TinyStories slices (data/README.md): the first recovery slice then held-out, 250 KB in all. */
export const TINYSTORIES_FILES = ['tinystories-recovery-start.txt', 'tinystories-heldout.txt'].map((f) => fileURLToPath(new URL(`../../../data/${f}`, import.meta.url)));

/** Parses llama2.c's tokenizer.bin into a ScoredVocabSource, as the model reader would. */
export function readTok512Bin(path = TOK512_BIN): ScoredVocabSource {
  const buf = readFileSync(path);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const pieces: string[] = [];
  const scores: number[] = [];
  let off = 4; // u32 max_token_length
  while (off < buf.length) {
    scores.push(buf.readFloatLE(off));
    const len = buf.readInt32LE(off + 4);
    off += 8;
    pieces.push(decoder.decode(buf.subarray(off, off + len)));
    off += len;
  }
  const types = pieces.map((p, id) => {
    if (id === 0) return TokenType.unknown;
    if (id === 1 || id === 2) return TokenType.control;
    return /^<0x[0-9A-F]{2}>$/.test(p) ? TokenType.byte : TokenType.normal;
  });
  return {
    kind: 'scored-vocab',
    // llama2.c's exporter writes BOS/EOS as '\n<s>\n' / '\n</s>\n' for printing; undo that.
    pieces: pieces.map((p, id) => (id === 1 ? '<s>' : id === 2 ? '</s>' : p.replaceAll(' ', '\u2581'))),
    scores,
    types,
    bosTokenId: 1,
    eosTokenIds: [2],
    unkTokenId: 0,
    addDummyPrefix: true,
    origin: path,
  };
}

export interface SentencePieceModel {
  pieces: { piece: string; score: number; type: number }[];
  addDummyPrefix: boolean;
}

/** Minimal protobuf reader for sentencepiece's ModelProto (pieces and normalizer_spec only). */
export function readSentencePieceModel(path = TOK512_MODEL): SentencePieceModel {
  const buf = new Uint8Array(readFileSync(path));
  const text = new TextDecoder('utf-8', { fatal: true });
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const varint = (pos: { at: number }): number => {
    let result = 0;
    let mul = 1;
    for (;;) {
      const b = buf[pos.at++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
  };
  /** Calls visit(field, wireType, pos-or-bytes) for each field in [start, end). */
  const fields = (start: number, end: number, visit: (field: number, value: number | Uint8Array, at: number) => void) => {
    const pos = { at: start };
    while (pos.at < end) {
      const key = varint(pos);
      const field = key >>> 3;
      switch (key & 7) {
        case 0:
          visit(field, varint(pos), pos.at);
          break;
        case 1:
          pos.at += 8;
          break;
        case 2: {
          const len = varint(pos);
          visit(field, buf.subarray(pos.at, pos.at + len), pos.at);
          pos.at += len;
          break;
        }
        case 5:
          visit(field, view.getFloat32(pos.at, true), pos.at);
          pos.at += 4;
          break;
        default:
          throw new Error(`unsupported wire type ${key & 7}`);
      }
    }
  };
  const model: SentencePieceModel = { pieces: [], addDummyPrefix: true };
  fields(0, buf.length, (field, value) => {
    if (!(value instanceof Uint8Array)) return;
    const start = value.byteOffset - buf.byteOffset;
    if (field === 1) {
      const p = { piece: '', score: 0, type: TokenType.normal as number };
      fields(start, start + value.length, (f, v) => {
        if (f === 1 && v instanceof Uint8Array) p.piece = text.decode(v);
        else if (f === 2 && typeof v === 'number') p.score = v;
        else if (f === 3 && typeof v === 'number') p.type = v;
      });
      model.pieces.push(p);
    } else if (field === 3) {
      fields(start, start + value.length, (f, v) => {
        if (f === 3 && typeof v === 'number') model.addDummyPrefix = v !== 0;
      });
    }
  });
  return model;
}

/**
 * Literal port of llama2.c `encode` (run.c): quadratic, obviously correct, used as the reference.
 * Differences from run.c that the contract asks for: only normal pieces are looked up, and spaces
 * are '▁'.
 */
export function llama2cEncodeReference(src: ScoredVocabSource, text: string, bos: boolean): number[] {
  const lookup = new Map<string, number>();
  src.pieces.forEach((p, i) => {
    if (src.types[i] === TokenType.normal && !lookup.has(p)) lookup.set(p, i);
  });
  const tokens: number[] = [];
  if (bos) tokens.push(src.bosTokenId);
  const body: number[] = [];
  const s = text.length > 0 && src.addDummyPrefix ? '\u2581' + text : text;
  for (const ch of s.replaceAll(' ', '\u2581')) {
    const id = lookup.get(ch);
    if (id !== undefined) body.push(id);
    else for (const b of new TextEncoder().encode(ch)) body.push(b + 3);
  }
  for (;;) {
    let best = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i + 1 < body.length; i++) {
      const id = lookup.get(src.pieces[body[i]!]! + src.pieces[body[i + 1]!]!);
      if (id !== undefined && src.scores[id]! > best) {
        best = src.scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    body.splice(bestIdx, 2, bestId);
  }
  return tokens.concat(body);
}

/** The TinyStories text (stories separated by blank lines). */
export function readTinyStories(): string {
  return TINYSTORIES_FILES.map((f) => readFileSync(f, 'utf8')).join('\n\n');
}

/** Strings beyond TinyStories' alphabet: byte fallback for everything not in the 512-piece vocab. */
export const EDGE_STRINGS = [
  'line one\nline two\n\nline four',
  '\ttab\tseparated\tvalues\t',
  'digits 0123456789 and 3.14159, 42!',
  'emoji 😀 and 👩‍🔬 and 🇫🇷',
  '中文字符 日本語 한국어',
  'café naïve résumé – “quotes” — …',
  '  two leading spaces',
  'trailing spaces  ',
  ' ',
  '\n',
  'a',
];
