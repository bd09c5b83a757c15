import { createByteBpeTokenizer } from './byte-bpe.ts';
import { ScoredVocabTokenizer } from './scored-vocab.ts';
import { TokenizerJsonTokenizer } from './tokenizer-json.ts';
import { TokenizerError } from './types.ts';
import type { Tokenizer, TokenizerSource } from './types.ts';

/** Builds the Tokenizer a model reader's TokenizerSource describes. */
export function createTokenizer(source: TokenizerSource): Tokenizer {
  // Sources come from files at run time, so an unexpected kind is reported, not assumed away.
  const kind: unknown = (source as { kind?: unknown } | null | undefined)?.kind;
  switch (kind) {
    case 'scored-vocab':
      return new ScoredVocabTokenizer(source as Extract<TokenizerSource, { kind: 'scored-vocab' }>);
    case 'byte-bpe':
      return createByteBpeTokenizer(source as Extract<TokenizerSource, { kind: 'byte-bpe' }>);
    case 'tokenizer.json':
      return new TokenizerJsonTokenizer(source as Extract<TokenizerSource, { kind: 'tokenizer.json' }>);
    default: {
      const origin = (source as { origin?: unknown } | null | undefined)?.origin;
      throw new TokenizerError(
        `${typeof origin === 'string' ? `${origin}: ` : ''}unknown tokenizer source kind ${JSON.stringify(kind)} (expected scored-vocab, byte-bpe or tokenizer.json)`,
      );
    }
  }
}

/**
 * Every token id the tokenizer can produce must index the model's embedding. A tokenizer smaller
 * than the embedding is fine (Hugging Face models pad the vocabulary to a multiple of 64 or so);
 * a larger one would feed out-of-range ids to the model.
 */
export function checkTokenizerMatchesModel(tok: Tokenizer, vocabSize: number, where: string): void {
  if (tok.vocabSize > vocabSize) {
    throw new TokenizerError(
      `${where}: the tokenizer has ${tok.vocabSize} tokens but the model's embedding has only ${vocabSize} rows`,
    );
  }
  const special: [string, number | undefined][] = [
    ['BOS', tok.bosTokenId],
    ...tok.eosTokenIds.map((id): [string, number] => ['EOS', id]),
  ];
  for (const [what, id] of special) {
    if (id !== undefined && (id < 0 || id >= vocabSize)) {
      throw new TokenizerError(`${where}: ${what} token id ${id} is outside the model's vocabulary of ${vocabSize}`);
    }
  }
}
