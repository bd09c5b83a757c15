import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createByteBpeTokenizer } from '../../src/runtime/tokenizer/byte-bpe.ts';
import { checkTokenizerMatchesModel, createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { scoredVocabToHfTokenizer } from '../../src/runtime/tokenizer/from-scored-vocab.ts';
import { ScoredVocabTokenizer } from '../../src/runtime/tokenizer/scored-vocab.ts';
import { TokenizerJsonTokenizer } from '../../src/runtime/tokenizer/tokenizer-json.ts';
import { TokenizerError } from '../../src/runtime/tokenizer/types.ts';
import type { TokenizerSource } from '../../src/runtime/tokenizer/types.ts';
import { readTok512Bin } from './helpers/tok512.ts';

const tokenizerError = (pattern: RegExp) => (e: unknown) => {
  assert.ok(e instanceof TokenizerError, `expected a TokenizerError, got ${String(e)}`);
  assert.match(e.message, pattern);
  return true;
};

const source = readTok512Bin();
const converted = scoredVocabToHfTokenizer(source);
const jsonSource = (json: unknown, config?: unknown): TokenizerSource => ({
  kind: 'tokenizer.json',
  json,
  config,
  origin: 'model-dir/tokenizer.json',
});

describe('createTokenizer', () => {
  it('dispatches on the source kind', () => {
    assert.ok(createTokenizer(source) instanceof ScoredVocabTokenizer);
    const fromJson = createTokenizer(jsonSource(converted.tokenizerJson, converted.tokenizerConfig));
    assert.ok(fromJson instanceof TokenizerJsonTokenizer);
    assert.deepEqual(fromJson.encode('Once upon a time'), [1, 403, 407, 261, 378]);
  });

  it('rejects an unknown source kind', () => {
    const bogus = { kind: 'sentencepiece-proto', origin: 'x.model' } as unknown as TokenizerSource;
    assert.throws(() => createTokenizer(bogus), tokenizerError(/x\.model.*unknown tokenizer source kind "sentencepiece-proto"/));
  });

  it('reports a tokenizer.json the library rejects, naming the problem', () => {
    const badNormalizer = { ...converted.tokenizerJson, normalizer: { type: 'NoSuchNormalizer' } };
    assert.throws(
      () => createTokenizer(jsonSource(badNormalizer)),
      tokenizerError(/model-dir\/tokenizer\.json.*cannot load.*NoSuchNormalizer/),
    );
    const { model: _, ...noModel } = converted.tokenizerJson;
    assert.throws(() => createTokenizer(jsonSource(noModel)), tokenizerError(/cannot load.*"model"/));
    assert.throws(() => createTokenizer(jsonSource('not json')), tokenizerError(/not a JSON object/));
  });

  it('refuses tokenizer.json features it could not reproduce faithfully', () => {
    const merged = {
      ...converted.tokenizerJson,
      pre_tokenizer: { type: 'Split', pattern: { Regex: '\\d' }, behavior: 'MergedWithPrevious', invert: false },
    };
    assert.throws(() => createTokenizer(jsonSource(merged)), tokenizerError(/Split with behavior MergedWithPrevious/));
    const wordPiece = { ...converted.tokenizerJson, decoder: { type: 'WordPiece', prefix: '##' } };
    assert.throws(() => createTokenizer(jsonSource(wordPiece)), tokenizerError(/decoder "WordPiece" is not supported/));
  });

  it('rejects a byte-level BPE pre-tokenizer it does not know', () => {
    assert.throws(
      () =>
        createByteBpeTokenizer({
          kind: 'byte-bpe',
          pieces: ['a'],
          merges: [],
          types: [1],
          bosTokenId: 0,
          eosTokenIds: [0],
          preTokenizer: 'made-up',
          origin: 'odd.gguf',
        }),
      tokenizerError(/odd\.gguf.*pre-tokenizer "made-up" is not supported/),
    );
  });
});

describe('checkTokenizerMatchesModel', () => {
  const tok = createTokenizer(source);

  it('accepts a tokenizer that fits the embedding, including a padded one', () => {
    checkTokenizerMatchesModel(tok, 512, 'stories260K.bin');
    checkTokenizerMatchesModel(tok, 576, 'padded.bin');
  });

  it('rejects a tokenizer larger than the model vocabulary, naming both sizes', () => {
    assert.throws(
      () => checkTokenizerMatchesModel(tok, 500, 'small.bin'),
      tokenizerError(/small\.bin.*512 tokens.*500/),
    );
  });
});
