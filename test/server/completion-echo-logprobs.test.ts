import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CompletionShape } from '../../src/server/completions.ts';
import { ResponseEnvelope } from '../../src/server/generation-response.ts';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import type { Tokenizer } from '../../src/runtime/tokenizer/types.ts';

describe('echo with logprobs: each prompt’s entries built once for all its choices', () => {
  it('decodes and spells a prompt once however large n is, and every choice gets the same entries', async () => {
    const real = createTokenizer((await loadModel(defaultModelPath())).tokenizer);
    let decoders = 0;
    let spelled = 0;
    const counting = new Proxy(real, {
      get(target, key, receiver) {
        if (key === 'createDecoder') return () => (decoders++, target.createDecoder());
        if (key === 'tokenText') return (t: number) => (spelled++, target.tokenText(t));
        return Reflect.get(target, key, receiver);
      },
    }) as Tokenizer;
    const tokens = real.encode('Once upon a time there was a little dog.');
    const scores = { logprobs: tokens.map((_, i) => (i === 0 ? null : -1 - i / 10)), top: tokens.map((_, i) => (i === 0 ? null : [{ token: 5, logprob: -0.5 }, { token: 7, logprob: -0.9 }])) };
    const n = 16;
    const shape = new CompletionShape(new ResponseEnvelope('cmpl', 'm'), counting, [{ tokens, text: real.decode(tokens) }], n, true, true, [scores]);
    // max_tokens 0 with echo: every choice is its prompt alone.
    const response = shape.response(Array.from({ length: n }, () => []));
    assert.equal(decoders, 1, 'one decoder for the prompt, not one per choice');
    // Per prompt token: its own text, and (after the first) two alternatives and itself in the top entries.
    assert.equal(spelled, tokens.length + 3 * (tokens.length - 1));
    const first = response.choices[0]!.logprobs!;
    assert.equal(first.tokens.length, tokens.length);
    assert.equal(first.text_offset[0], 0);
    assert.equal(first.text_offset.at(-1)! + first.tokens.at(-1)!.length, response.choices[0]!.text.length);
    for (const c of response.choices) assert.deepEqual(c.logprobs, first);
  });
});
