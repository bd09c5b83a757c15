import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ScoredVocabTokenizer } from '../../src/runtime/tokenizer/scored-vocab.ts';
import { Utf8StreamDecoder } from '../../src/runtime/tokenizer/stream-decoder.ts';
import { EDGE_STRINGS, readTinyStories, readTok512Bin } from './helpers/tok512.ts';

const tok = new ScoredVocabTokenizer(readTok512Bin());
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe('streaming decode', () => {
  it('concatenating per-token pushes gives exactly decode()', () => {
    const texts = readTinyStories().slice(0, 20_000).split('\n\n').concat(EDGE_STRINGS);
    for (const text of texts) {
      const ids = tok.encode(text);
      const dec = tok.createDecoder();
      let streamed = '';
      for (const i of ids) streamed += dec.push(i);
      streamed += dec.flush();
      assert.equal(streamed, tok.decode(ids), JSON.stringify(text));
      assert.equal(streamed, text);
    }
  });

  it('never emits a broken character while a 4-byte emoji arrives as byte pieces', () => {
    const ids = tok.encode('Hi 😀!', { addBos: false });
    // ▁H i ▁ <0xF0> <0x9F> <0x98> <0x80> ! — the emoji is four separate byte tokens.
    assert.ok(ids.length >= 6);
    const dec = tok.createDecoder();
    const outputs = ids.map((i) => dec.push(i));
    for (const out of outputs) {
      assert.ok(!out.includes('\uFFFD'), `no replacement character in ${JSON.stringify(out)}`);
      assert.ok(!LONE_SURROGATE.test(out), `no lone surrogate in ${JSON.stringify(out)}`);
    }
    assert.ok(outputs.includes('😀'), 'the emoji comes out whole, from the push of its last byte');
    assert.equal(outputs.join('') + dec.flush(), 'Hi 😀!');
  });

  it('holds back an incomplete tail and renders it as U+FFFD on flush', () => {
    const dec = tok.createDecoder();
    assert.equal(dec.push(3 + 0xe4), '');
    assert.equal(dec.push(3 + 0xbd), '');
    assert.equal(dec.flush(), '\uFFFD');
    // The decoder is usable again after a flush.
    assert.equal(dec.push(3 + 0x41), 'A');
    assert.equal(dec.flush(), '');
  });

  it('emits invalid bytes as U+FFFD the same way a whole decode does', () => {
    const ids = [3 + 0x80, 3 + 0x41, 3 + 0xf0, 3 + 0x28];
    const dec = tok.createDecoder();
    const streamed = ids.map((i) => dec.push(i)).join('') + dec.flush();
    assert.equal(streamed, tok.decode(ids));
    assert.equal(streamed, '\uFFFDA\uFFFD(');
  });

  it('works over any tokenBytes function', () => {
    const table = [new Uint8Array([0x20, 0x68, 0x69]), new Uint8Array([0xc3]), new Uint8Array([0xa9])];
    const dec = new Utf8StreamDecoder(
      { tokenBytes: (i) => table[i]!, stripFirstSpace: true, bosTokenId: undefined },
      undefined,
    );
    assert.equal(dec.push(0), 'hi');
    assert.equal(dec.push(1), '');
    assert.equal(dec.push(2), 'é');
  });
});
