import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generate, generateText } from '../../src/runtime/engine/generate.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { openModel, type OpenedModel } from '../../src/runtime/engine/open-model.ts';
import { defaultSamplingParams } from '../../src/runtime/engine/sampling-params.ts';
import { writeGguf } from '../../src/runtime/model/gguf-writer.ts';
import { writeHfDirectory } from '../../src/runtime/model/hf.ts';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { ScoredVocabSource } from '../../src/runtime/tokenizer/types.ts';
import { scoredVocabToHfTokenizer } from '../../src/runtime/tokenizer/from-scored-vocab.ts';
import { referenceForward } from '../helpers/reference-forward.ts';
import { argmax, maxAbsDiff } from '../helpers/logits.ts';

const greedy = defaultSamplingParams({ temperature: 0 });

describe('the bundled stories260K model', () => {
  let m: OpenedModel;
  before(async () => {
    m = await openModel({ maxContext: 256, threads: 1 });
  });
  after(async () => m.session.release());

  it('continues "Once upon a time" greedily as llama2.c does (golden)', async () => {
    const promptTokens = m.tokenizer.encode('Once upon a time');
    const out = await generateText(m.session, m.tokenizer, { promptTokens, maxTokens: 16, sampling: greedy });
    assert.equal(out.text, ', there was a little girl named Lily. She loved to play');
  });

  it('starts a story from BOS alone like the published sample', async () => {
    const out = await generateText(m.session, m.tokenizer, { promptTokens: m.tokenizer.encode(''), maxTokens: 40, sampling: greedy });
    assert.ok(out.text.startsWith('Once upon a time, there was a little girl named Lily. She loved to play outside in the park.'), out.text);
  });

  it('matches the reference forward pass within 1e-3 for prefill and 32 decode steps', async () => {
    const tokens = m.tokenizer.encode('The cat sat on the mat and');
    let logits = await m.session.prefill(0, tokens);
    for (let step = 0; step <= 32; step++) {
      const ref = referenceForward(m.model.spec, m.model.weights, tokens);
      const diff = maxAbsDiff(logits, ref.subarray((tokens.length - 1) * m.model.spec.vocabSize));
      assert.ok(diff <= 1e-3, `step ${step}: max |Δlogit| = ${diff}`);
      if (step === 32) break;
      tokens.push(argmax(logits));
      [logits] = (await m.session.decode([{ slot: 0, token: tokens[tokens.length - 1]! }])) as [Float32Array];
    }
    m.session.reset(0);
  });

  it('gives the same text for the same seed, and different text for another seed', async () => {
    const run = async (seed: number) =>
      (await generateText(m.session, m.tokenizer, { promptTokens: m.tokenizer.encode('Tom had a'), maxTokens: 40, sampling: defaultSamplingParams({ temperature: 1, seed }) })).text;
    const a = await run(42);
    assert.equal(await run(42), a);
    assert.notEqual(await run(7), a);
  });

  it('stops before a stop string that spans tokens and does not emit it', async () => {
    const out = await generateText(m.session, m.tokenizer, { promptTokens: m.tokenizer.encode('Once upon a time'), maxTokens: 30, sampling: greedy, stop: ['named Li'] });
    assert.equal(out.text, ', there was a little girl ');
    assert.equal(out.finishReason, 'stop');
  });

  it('ends with finish reason "length" at max tokens and reports logprobs with top alternatives', async () => {
    const events = [];
    for await (const e of generate(m.session, m.tokenizer, { promptTokens: m.tokenizer.encode('Once'), maxTokens: 5, sampling: defaultSamplingParams({ temperature: 0, logprobs: 3 }) })) events.push(e);
    const tokens = events.filter((e) => e.type === 'token');
    assert.equal(tokens.length, 5);
    for (const t of tokens) {
      assert.equal(t.top?.length, 3);
      assert.equal(t.top![0]!.token, t.token, 'greedy picks the most likely token');
      assert.ok(t.logprob !== undefined && t.logprob <= 0 && t.logprob === t.top![0]!.logprob);
    }
    assert.deepEqual(events.at(-1), { type: 'finish', reason: 'length', text: '', promptTokens: 2, completionTokens: 5 });
  });

  it('ends with finish reason "abort" when the signal fires', async () => {
    const ac = new AbortController();
    let n = 0;
    let finish;
    for await (const e of generate(m.session, m.tokenizer, { promptTokens: m.tokenizer.encode('Once'), maxTokens: 100, sampling: greedy, signal: ac.signal })) {
      if (e.type === 'token' && ++n === 3) ac.abort();
      if (e.type === 'finish') finish = e;
    }
    assert.equal(n, 3);
    assert.equal(finish!.reason, 'abort');
  });

  it('refuses a prompt that fills the context, naming both lengths', async () => {
    const long = Array.from({ length: 300 }, () => 400);
    await assert.rejects(generateText(m.session, m.tokenizer, { promptTokens: long, maxTokens: 1, sampling: greedy }), {
      name: 'ContextLengthError',
      message: /300 tokens; the context holds 256/,
    });
  });
});

describe('all three checkpoint readers', () => {
  it('give the same logits for the bundled weights (llama2.c, HF directory and GGUF written from it)', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-readers-'));
    try {
      const base = await loadModel(defaultModelPath());
      const hf = scoredVocabToHfTokenizer(base.tokenizer as ScoredVocabSource);
      await writeHfDirectory(base, path.join(dir, 'hf'), { tokenizerJson: hf.tokenizerJson, tokenizerConfig: hf.tokenizerConfig });
      await writeGguf(base, path.join(dir, 'model.gguf'), { tokenizer: base.tokenizer as ScoredVocabSource });
      const prompt = 'Lily and Ben went to the park. They saw a big dog.';
      const results: { name: string; tokens: number[]; logits: Float32Array }[] = [];
      for (const [name, p] of [['llama2c', defaultModelPath()], ['hf', path.join(dir, 'hf')], ['gguf', path.join(dir, 'model.gguf')], ['shipped gguf', path.join(path.dirname(defaultModelPath()), 'stories260K.gguf')]]) {
        const opened = await openModel({ modelPath: p!, maxContext: 64, threads: 1 });
        const tokens = opened.tokenizer.encode(prompt);
        const session = await ModelSession.create(opened.model.spec, opened.model.weights, { maxBatch: 1, maxContext: 64, logits: 'all', threads: 1 });
        results.push({ name: name!, tokens, logits: await session.prefill(0, tokens) });
        await session.release();
        await opened.session.release();
      }
      const [first, ...rest] = results;
      for (const r of rest) {
        assert.deepEqual(r.tokens, first!.tokens, `${r.name} tokenizes like llama2c`);
        assert.equal(maxAbsDiff(r.logits, first!.logits), 0, `${r.name} logits equal llama2c's`);
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
