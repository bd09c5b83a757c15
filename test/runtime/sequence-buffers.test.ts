import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRng } from '../../src/runtime/engine/rng.ts';
import { Sampler, TokenHistory } from '../../src/runtime/engine/sampler.ts';
import { defaultSamplingParams, SamplingParamsError, type SamplingParams } from '../../src/runtime/engine/sampling-params.ts';
import { Sequence } from '../../src/runtime/engine/sequence.ts';
import { syntheticVocabulary } from '../../src/runtime/model/synthetic.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';

const VOCAB = 32_000;
const tokenizer = createTokenizer(syntheticVocabulary(VOCAB));

function logits(seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: VOCAB }, () => (rng.nextFloat() - 0.5) * 8);
}

function sequence(sampling: SamplingParams, maxTokens = 4): Sequence {
  return new Sequence({ promptTokens: [1, 300, 301], maxTokens, sampling, ignoreEos: true }, tokenizer, VOCAB);
}

describe('sampler buffers of a sequence', () => {
  it('are not held by a sequence that has not stepped (a queued request)', () => {
    const s = sequence(defaultSamplingParams({ temperature: 0.8, topP: 0.9, logprobs: 5, seed: 1 }));
    assert.equal(s.bufferBytes, 0);
  });

  it('are allocated at the first step and released when the sequence finishes', () => {
    const s = sequence(defaultSamplingParams({ temperature: 0.8, topP: 0.9, logprobs: 5, seed: 1 }), 2);
    s.step(logits(1));
    assert.ok(s.bufferBytes >= 3 * 4 * VOCAB, `${s.bufferBytes} bytes after a sampled step`);
    const events = s.step(logits(2));
    assert.equal(events.at(-1)!.type, 'finish');
    assert.equal(s.bufferBytes, 0, 'released at the finish');

    const aborted = sequence(defaultSamplingParams({ temperature: 1, seed: 1 }));
    aborted.step(logits(1));
    assert.ok(aborted.bufferBytes > 0);
    aborted.finish('abort');
    assert.equal(aborted.bufferBytes, 0, 'released at an early finish too');
  });

  it('are only the logits copy for a greedy sequence', () => {
    const s = sequence(defaultSamplingParams({ temperature: 0 }));
    s.step(logits(1));
    assert.equal(s.bufferBytes, 4 * VOCAB);
  });

  it('still refuse invalid sampling parameters when the sequence is built', () => {
    assert.throws(() => sequence(defaultSamplingParams({ temperature: -1 })), SamplingParamsError);
    assert.throws(() => sequence(defaultSamplingParams({ topP: 0 })), SamplingParamsError);
  });

  it('leave the sampled tokens and logprobs as a sampler built up front gives them', () => {
    const p = defaultSamplingParams({ temperature: 0.9, topK: 50, topP: 0.95, minP: 0.01, frequencyPenalty: 0.5, logprobs: 3, seed: 77 });
    const s = sequence(p, 6);
    const reference = new Sampler(p, VOCAB);
    const history = new TokenHistory([1, 300, 301]);
    for (let i = 0; i < 6; i++) {
      const l = logits(100 + i);
      const expected = reference.sample(l, history);
      history.push(expected.token);
      const event = s.step(l)[0]!;
      assert.equal(event.type, 'token');
      if (event.type !== 'token') continue;
      assert.equal(event.token, expected.token);
      assert.equal(event.logprob, expected.logprob);
      assert.deepEqual(event.top, expected.top);
    }
  });
});

describe('Sampler buffers', () => {
  it('are allocated on first use and given back by release()', () => {
    const sampler = new Sampler(defaultSamplingParams({ temperature: 1, logprobs: 2, seed: 3 }), VOCAB);
    assert.equal(sampler.bufferBytes, 0);
    const first = sampler.sample(logits(5), new TokenHistory());
    assert.ok(sampler.bufferBytes > 0);
    sampler.release();
    assert.equal(sampler.bufferBytes, 0);
    // Sampling again after a release allocates again, and the rng stream carries on.
    const again = new Sampler(defaultSamplingParams({ temperature: 1, logprobs: 2, seed: 3 }), VOCAB);
    again.sample(logits(5), new TokenHistory());
    assert.deepEqual(sampler.sample(logits(6), new TokenHistory()), again.sample(logits(6), new TokenHistory()));
    assert.ok(first.top!.length === 2);
  });
});
