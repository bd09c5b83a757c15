import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ScoredVocabTokenizer } from '../../src/runtime/tokenizer/scored-vocab.ts';
import { TokenizerError, TokenType } from '../../src/runtime/tokenizer/types.ts';
import type { ScoredVocabSource } from '../../src/runtime/tokenizer/types.ts';
import {
  EDGE_STRINGS,
  llama2cEncodeReference,
  readSentencePieceModel,
  readTinyStories,
  readTok512Bin,
} from './helpers/tok512.ts';

const source = readTok512Bin();
const tok = new ScoredVocabTokenizer(source);
const id = (piece: string): number => {
  const i = source.pieces.indexOf(piece);
  assert.ok(i >= 0, `piece ${piece} is in the vocabulary`);
  return i;
};

describe('scored-vocab tokenizer (stories260K tok512)', () => {
  it('reads the same vocabulary from tok512.bin as from the sentencepiece tok512.model', () => {
    const sp = readSentencePieceModel();
    assert.equal(sp.addDummyPrefix, true);
    assert.deepEqual(
      sp.pieces.map((p) => p.piece),
      source.pieces,
    );
    assert.deepEqual(
      sp.pieces.map((p) => p.score),
      source.scores,
    );
    assert.deepEqual(
      sp.pieces.map((p) => p.type),
      source.types,
    );
  });

  it('encodes "Once upon a time" with BOS to the ids llama2.c produces', () => {
    // ▁Once ▁upon ▁a ▁time are all single pieces; merges reach them via ▁O+nce etc.
    assert.deepEqual(tok.encode('Once upon a time'), [1, 403, 407, 261, 378]);
    assert.deepEqual(
      [403, 407, 261, 378].map((i) => source.pieces[i]),
      ['▁Once', '▁upon', '▁a', '▁time'],
    );
    assert.deepEqual(tok.encode('Once upon a time', { addBos: false }), [403, 407, 261, 378]);
  });

  it('encodes the empty string to BOS only (no dummy prefix)', () => {
    assert.deepEqual(tok.encode(''), [1]);
    assert.deepEqual(tok.encode('', { addBos: false }), []);
  });

  it('agrees with a literal port of llama2.c encode on TinyStories lines and edge strings', () => {
    const lines = readTinyStories().split('\n').slice(0, 400).concat(EDGE_STRINGS);
    for (const line of lines) {
      assert.deepEqual(tok.encode(line), llama2cEncodeReference(source, line, true), JSON.stringify(line));
    }
  });

  it('falls back to <0xNN> byte pieces for characters outside the vocabulary', () => {
    // '😀' is F0 9F 98 80; byte pieces sit at 3 + byte value.
    assert.deepEqual(tok.encode('😀', { addBos: false }), [id('▁'), 3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80]);
  });

  it('round-trips every story in the first 200 KB of TinyStories', () => {
    const stories = readTinyStories().slice(0, 200_000).split('\n\n');
    assert.ok(stories.length > 100);
    for (const story of stories) assert.equal(tok.decode(tok.encode(story)), story);
  });

  it('round-trips newlines, tabs, digits, emoji and CJK through byte fallback', () => {
    for (const s of EDGE_STRINGS) assert.equal(tok.decode(tok.encode(s)), s, JSON.stringify(s));
  });

  it('drops the dummy-prefix space of the first piece after BOS or nothing, and only then', () => {
    assert.equal(tok.decode([1, id('▁Once')]), 'Once');
    assert.equal(tok.decode([id('▁Once')]), 'Once');
    assert.equal(tok.decode([id('▁Once'), id('▁upon')]), 'Once upon');
    // Continuing after a normal prompt token: the space is real.
    const dec = tok.createDecoder(id('▁upon'));
    assert.equal(dec.push(id('▁there')), ' there');
    const afterBos = tok.createDecoder(1);
    assert.equal(afterBos.push(id('▁there')), 'there');
    assert.equal(afterBos.push(id('▁there')), ' there');
  });

  it('gives control tokens no text and keeps their name for display', () => {
    assert.equal(tok.tokenBytes(1).length, 0);
    assert.equal(tok.tokenBytes(2).length, 0);
    assert.equal(tok.decode([1, id('▁Once'), 2]), 'Once');
    assert.equal(tok.tokenText(2), '</s>');
    assert.equal(tok.tokenText(id('▁Once')), ' Once');
    assert.deepEqual([...tok.tokenBytes(3 + 0x0a)], [0x0a]);
    assert.equal(tok.tokenText(3 + 0xf0), '\uFFFD');
  });

  it('never produces control or unknown pieces from text spans', () => {
    const ids = tok.encode([{ text: '<s> </s> <unk> <0x41>', specialTokens: 'text' }], { addBos: false });
    assert.ok(ids.every((i) => source.types[i] === TokenType.normal || source.types[i] === TokenType.byte));
    assert.equal(tok.decode(ids), '<s> </s> <unk> <0x41>');
  });

  it('parses control and unknown texts anywhere in a raw prompt, as llama.cpp does', () => {
    assert.deepEqual(tok.specialTokenTexts, ['<unk>', '<s>', '</s>']);
    const a = tok.encode('Once upon', { addBos: false });
    const b = tok.encode('a time', { addBos: false });
    // Each text run after a control token gets the dummy prefix again; the BOS the text starts with is the one BOS.
    assert.deepEqual(tok.encode('<s>Once upon</s><s>a time<unk>'), [1, ...a, 2, 1, ...b, 0]);
    assert.deepEqual(tok.encode('Once upon</s>', { addBos: false }), [...a, 2]);
    // '<0x41>' is a byte piece, not a control token: it stays text.
    assert.equal(tok.decode(tok.encode('<0x41>')), '<0x41>');
  });

  it('finds control texts only wholly inside parse spans; spans never split the text around them', () => {
    const spans = (...parts: [string, 'parse' | 'text'][]) => parts.map(([text, specialTokens]) => ({ text, specialTokens }));
    const whole = tok.encode('Once upon a time');
    assert.deepEqual(tok.encode(spans(['Once up', 'parse'], ['on a ', 'text'], ['time', 'parse'])), whole);
    const a = tok.encode('Once upon', { addBos: false });
    const b = tok.encode('a time', { addBos: false });
    assert.deepEqual(tok.encode(spans(['Once upon</s>', 'parse'], ['a time', 'text'])), [1, ...a, 2, ...b]);
    // Split across a parse and a text span, or written in a text span: text.
    for (const s of [spans(['Once upon</', 'parse'], ['s>a time', 'text']), spans(['Once upon', 'parse'], ['</s>', 'text'], ['a time', 'parse'])]) {
      const ids = tok.encode(s);
      assert.ok(!ids.slice(1).includes(1) && !ids.includes(2), JSON.stringify(s));
      assert.equal(tok.decode(ids), 'Once upon</s>a time');
    }
    // Adjacent parse spans count as one.
    assert.deepEqual(tok.encode(spans(['Once upon</', 'parse'], ['s>', 'parse'])), [1, ...a, 2]);
  });

  it('encodes the whole 638 KB TinyStories file in well under 5 s', () => {
    const text = readTinyStories();
    const start = performance.now();
    const ids = tok.encode(text);
    const ms = performance.now() - start;
    assert.ok(ms < 5000, `took ${ms.toFixed(0)} ms`);
    assert.ok(ids.length > 100_000);
    assert.equal(tok.decode(ids), text);
  });

  it('matches user-defined pieces whole and re-applies the dummy prefix after them', () => {
    const pieces = ['<unk>', '<s>', '</s>', '<|sep|>', '▁', 'a', 'b', '▁a', 'ab', '▁ab'];
    const types = pieces.map((_, i) =>
      i === 0 ? TokenType.unknown : i < 3 ? TokenType.control : i === 3 ? TokenType.userDefined : TokenType.normal,
    );
    const small = new ScoredVocabTokenizer({
      kind: 'scored-vocab',
      pieces,
      scores: pieces.map((_, i) => -i),
      types,
      bosTokenId: 1,
      eosTokenIds: [2],
      unkTokenId: 0,
      addDummyPrefix: true,
      origin: 'test vocab',
    });
    // llama.cpp: "ab<|sep|>ab" -> ▁ab <|sep|> ▁ab (each text run gets the prefix)
    assert.deepEqual(small.encode('ab<|sep|>ab'), [1, 9, 3, 9]);
    // No byte pieces: unknown characters become <unk>.
    assert.deepEqual(small.encode('ac', { addBos: false }), [7, 0]);
    assert.equal(small.decode([1, 9, 3, 9]), 'ab<|sep|> ab');
  });

  it('rejects inconsistent vocabularies with a TokenizerError', () => {
    const bad: ScoredVocabSource = { ...source, scores: source.scores.slice(1), origin: 'broken.bin' };
    assert.throws(() => new ScoredVocabTokenizer(bad), (e: unknown) => {
      assert.ok(e instanceof TokenizerError);
      assert.match(e.message, /broken\.bin.*512 pieces, 511 scores/);
      return true;
    });
    assert.throws(
      () => new ScoredVocabTokenizer({ ...source, bosTokenId: 999 }),
      (e: unknown) => e instanceof TokenizerError && /BOS token id 999/.test(e.message),
    );
  });
});
