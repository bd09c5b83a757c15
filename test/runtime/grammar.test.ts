import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Sampler, TokenHistory } from '../../src/runtime/engine/sampler.ts';
import { applyTokenMask } from '../../src/runtime/engine/token-mask.ts';
import type { TokenConstraint } from '../../src/runtime/grammar/token-constraint.ts';
import { defaultSamplingParams } from '../../src/runtime/engine/sampling-params.ts';
import { openModel } from '../../src/runtime/engine/open-model.ts';
import { BatchScheduler } from '../../src/runtime/engine/scheduler.ts';
import { Sequence } from '../../src/runtime/engine/sequence.ts';
import { GrammarCompiler } from '../../src/runtime/grammar/grammar-compiler.ts';
import { GrammarError, type GrammarSpec, grammarKey } from '../../src/runtime/grammar/grammar-spec.ts';
import { grammarVocabulary } from '../../src/runtime/grammar/vocabulary.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { BYTE_LEVEL_CHAR_TO_BYTE } from '../../src/runtime/tokenizer/tokenizer-json.ts';
import { scoredVocabToHfTokenizer } from '../../src/runtime/tokenizer/from-scored-vocab.ts';
import type { ByteBpeSource, Tokenizer } from '../../src/runtime/tokenizer/types.ts';
import { readTok512Bin } from './helpers/tok512.ts';

/** A mask allowing exactly `ids` over `vocab` tokens. */
function maskOf(vocab: number, ids: number[]): Int32Array {
  const m = new Int32Array(Math.ceil(vocab / 32));
  for (const id of ids) m[id >> 5]! |= 1 << (id & 31);
  return m;
}

/** GPT-2's byte → character alphabet. */
const byteChars = (): string[] => [...BYTE_LEVEL_CHAR_TO_BYTE].sort((a, b) => a[1] - b[1]).map(([ch]) => ch);

function byteBpeTokenizer(): Tokenizer {
  const pieces = ['<s>', '</s>', ...byteChars(), '{"', 'Ġ1'];
  const source: ByteBpeSource = { kind: 'byte-bpe', pieces, merges: ['{ "', 'Ġ 1'], types: pieces.map((_, i) => (i < 2 ? 3 : 1)), bosTokenId: 0, eosTokenIds: [1], preTokenizer: 'llama-bpe', origin: 'synthetic' };
  return createTokenizer(source);
}

/** A tokenizer whose tokens are exactly `texts` (plus EOS, id 0): for vocabulary edge cases. */
function literalTokenizer(texts: string[]): Tokenizer {
  const bytes = [new Uint8Array(0), ...texts.map((t) => new TextEncoder().encode(t))];
  return { vocabSize: bytes.length, bosTokenId: undefined, eosTokenIds: [0], specialTokenTexts: [], tokenBytes: (id: number) => bytes[id]! } as unknown as Tokenizer;
}

/**
 * The tokens of `text` as generated after other text (a sentencepiece tokenizer's dummy-prefix
 * space belongs to the start of a text, not to a continuation): encoded after an 'X', which is
 * then dropped. Their bytes are exactly the text's.
 */
function continuation(tok: Tokenizer, text: string): number[] {
  const tokens = tok.encode('X' + text, { addBos: false });
  let lead = '';
  let at = 0;
  while (lead.trim() !== 'X') lead += new TextDecoder().decode(tok.tokenBytes(tokens[at++]!));
  const rest = tokens.slice(at);
  assert.equal(Buffer.concat(rest.map((t) => tok.tokenBytes(t))).toString(), text);
  return rest;
}

/** Whether the constraint accepts these tokens in order and then allows EOS. */
async function accepts(compiler: GrammarCompiler, spec: GrammarSpec, tokens: number[], eos: number): Promise<boolean> {
  const c = await compiler.constraint(spec);
  try {
    for (const t of tokens) {
      const m = c.mask();
      if (!((m[t >> 5]! >>> (t & 31)) & 1)) return false;
      c.accept(t);
    }
    const m = c.mask();
    return ((m[eos >> 5]! >>> (eos & 31)) & 1) === 1;
  } finally {
    c.release();
  }
}

describe('token masks in the sampler', () => {
  it('draws only allowed tokens, whatever temperature, top-k and top-p would favour', () => {
    const vocab = 40;
    const logits = new Float32Array(vocab).map((_, i) => (i < 5 ? 20 : 0));
    const allowed = maskOf(vocab, [7, 33]);
    for (const params of [{ temperature: 0 }, { temperature: 2 }, { temperature: 1, topK: 2 }, { temperature: 1, topP: 0.5 }, { temperature: 1, minP: 0.9 }]) {
      const sampler = new Sampler(defaultSamplingParams({ ...params, seed: 1, logprobs: 2 }), vocab);
      for (let i = 0; i < 50; i++) {
        const s = sampler.sample(logits, new TokenHistory(), allowed);
        assert.ok(s.token === 7 || s.token === 33, `${JSON.stringify(params)} drew ${s.token}`);
        // Reported logprobs stay the raw model's.
        assert.ok(s.top!.every((t) => t.token < 5));
      }
    }
  });

  it('falls back to the lowest allowed token when every allowed logit is -Infinity', () => {
    const logits = new Float32Array(64).fill(-Infinity);
    logits[0] = 1;
    assert.equal(new Sampler(defaultSamplingParams({ temperature: 1 }), 64).sample(logits, new TokenHistory(), maskOf(64, [40, 50])).token, 40);
    const work = new Float32Array(64).fill(1);
    assert.equal(applyTokenMask(work, maskOf(64, [35])), 35);
    assert.equal(work.filter((x) => x === 1).length, 1);
  });

  it('ends a sequence when its constraint is complete, and releases the constraint', () => {
    const tok = createTokenizer(readTok512Bin());
    let released = 0;
    let step = 0;
    const constraint: TokenConstraint = {
      mask: () => maskOf(512, [step === 0 ? 300 : 301]),
      accept: () => void step++,
      get terminated() {
        return step === 2;
      },
      release: () => void released++,
    };
    const seq = new Sequence({ promptTokens: [1], maxTokens: 10, sampling: defaultSamplingParams({ temperature: 1 }), constraint }, tok, 512);
    const logits = new Float32Array(512);
    logits[5] = 5;
    assert.deepEqual(seq.step(logits).map((e) => e.type), ['token']);
    const last = seq.step(logits);
    assert.deepEqual(last.map((e) => e.type), ['token', 'finish']);
    assert.equal(seq.finished?.reason, 'stop');
    assert.equal(released, 1);
  });
});

describe('the grammar compiler (xgrammar)', () => {
  it('builds xgrammar vocabularies from every tokenizer kind: each encodes JSON the schema accepts', async () => {
    const scored = createTokenizer(readTok512Bin());
    const hf = scoredVocabToHfTokenizer(readTok512Bin());
    const kinds: [string, Tokenizer][] = [
      ['scored-vocab', scored],
      ['tokenizer.json', createTokenizer({ kind: 'tokenizer.json', json: hf.tokenizerJson, config: hf.tokenizerConfig, origin: 'test' })],
      ['byte-bpe', byteBpeTokenizer()],
    ];
    const spec: GrammarSpec = { kind: 'json', schema: JSON.stringify({ type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] }) };
    for (const [kind, tok] of kinds) {
      const compiler = new GrammarCompiler(grammarVocabulary(tok, tok.vocabSize + 3));
      assert.ok(await accepts(compiler, spec, continuation(tok, '{"a": 1}'), tok.eosTokenIds[0]!), kind);
      assert.ok(!(await accepts(compiler, spec, continuation(tok, '{"a":1}'), tok.eosTokenIds[0]!)), `${kind}: vLLM's separators are ", " and ": "`);
    }
  });

  it('turns an abort into a GrammarError with the module\'s reason, and keeps compiling after it', async () => {
    const tok = literalTokenizer(['a', 'b', '{', '}', '"', ':', ' ', ',', '1']);
    const compiler = new GrammarCompiler(grammarVocabulary(tok, tok.vocabSize));
    const bad: [GrammarSpec, RegExp][] = [
      [{ kind: 'ebnf', grammar: 'root ::= "a" |' }, /EBNF parser error/],
      [{ kind: 'json', schema: '{"type":"objectx"}' }, /Unsupported type "objectx"/],
      [{ kind: 'regex', pattern: '(a' }, /Regex parsing error/],
    ];
    for (const [spec, reason] of bad) {
      await assert.rejects(compiler.check(spec), (e: Error) => e instanceof GrammarError && reason.test(e.message));
      assert.ok(await accepts(compiler, { kind: 'ebnf', grammar: 'root ::= "a" "b"*' }, [1, 2, 2], 0));
    }
  });

  it('compiles each distinct grammar once (equal specs in any key order share it)', async () => {
    const tok = literalTokenizer(['a', 'b']);
    const compiler = new GrammarCompiler(grammarVocabulary(tok, tok.vocabSize), { cacheSize: 2 });
    const a = await compiler.compile({ kind: 'choice', choices: ['a', 'ab'] });
    assert.equal(await compiler.compile({ choices: ['a', 'ab'], kind: 'choice' } as GrammarSpec), a);
    assert.equal(grammarKey({ kind: 'json', schema: '{}', format: { strict: true, indent: 2 } }), grammarKey({ format: { indent: 2, strict: true }, schema: '{}', kind: 'json' } as GrammarSpec));
    await compiler.compile({ kind: 'choice', choices: ['b'] });
    await compiler.compile({ kind: 'choice', choices: ['bb'] });
    assert.notEqual(await compiler.compile({ kind: 'choice', choices: ['a', 'ab'] }), a, 'evicted past the cache size');
  });

  it('drops separator spaces a vocabulary without a space token cannot write, and refuses text it cannot write at all', async () => {
    const tok = literalTokenizer(['{', '}', '"', 'a', ':', ',', '1']);
    const compiler = new GrammarCompiler(grammarVocabulary(tok, tok.vocabSize));
    const spec: GrammarSpec = { kind: 'json', schema: JSON.stringify({ type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] }) };
    // {"a":1}
    assert.ok(await accepts(compiler, spec, [1, 3, 4, 3, 5, 7, 2], 0));
    await assert.rejects(compiler.check({ kind: 'json', schema: spec.schema, format: { indent: 2 } }), /cannot write indented JSON/);
    await assert.rejects(compiler.check({ kind: 'ebnf', grammar: 'root ::= "z"' }), (e: Error) => e instanceof GrammarError && /allows no token/.test(e.message));
  });
});

describe('a constraint that cannot be met in a running batch', () => {
  it('fails its own request with the GrammarError while the batch beside it finishes normally', async () => {
    const m = await openModel({ maxContext: 128, threads: 1 });
    try {
      const scheduler = new BatchScheduler(m.session, m.tokenizer, { maxQueue: 4, prefillChunk: 64, requestTimeoutMs: 0 });
      let steps = 0;
      const deadEnd: TokenConstraint = {
        mask: () => {
          if (++steps > 3) throw new GrammarError('the grammar allows no token of this model\'s vocabulary here');
          return maskOf(512, [300]);
        },
        accept: () => undefined,
        terminated: false,
        release: () => undefined,
      };
      const prompt = m.tokenizer.encode('Once upon a time');
      const sampling = defaultSamplingParams({ temperature: 0 });
      const bad = scheduler.submit({ promptTokens: prompt, maxTokens: 20, sampling, constraint: deadEnd });
      const good = scheduler.submit({ promptTokens: prompt, maxTokens: 20, sampling, ignoreEos: true });
      const drain = async (h: typeof bad) => {
        const events = [];
        for await (const e of h.events) events.push(e);
        return events;
      };
      await assert.rejects(drain(bad), (e: Error) => e instanceof GrammarError);
      const events = await drain(good);
      const last = events.at(-1);
      assert.equal(last?.type === 'finish' && last.reason, 'length');
    } finally {
      await m.session.release();
    }
  });
});
