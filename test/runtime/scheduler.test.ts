import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateText } from '../../src/runtime/engine/generate.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { openModel, type OpenedModel } from '../../src/runtime/engine/open-model.ts';
import { defaultSamplingParams } from '../../src/runtime/engine/sampling-params.ts';
import { BatchScheduler } from '../../src/runtime/engine/scheduler.ts';
import type { RequestHandle } from '../../src/runtime/engine/scheduler-types.ts';
import type { GenerationRequest } from '../../src/runtime/engine/sequence.ts';

const greedy = defaultSamplingParams({ temperature: 0 });

async function collect(h: RequestHandle): Promise<{ text: string; reason: string; tokens: number }> {
  let text = '';
  let reason = '';
  let tokens = 0;
  for await (const e of h.events) {
    text += e.text;
    if (e.type === 'token') tokens++;
    else reason = e.reason;
  }
  return { text, reason, tokens };
}

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('continuous batching scheduler', () => {
  let m: OpenedModel;
  let batched: ModelSession;
  before(async () => {
    m = await openModel({ maxContext: 256, threads: 1 });
    batched = await ModelSession.create(m.model.spec, m.model.weights, { maxBatch: 4, maxContext: 256, threads: 1 });
  });
  after(async () => {
    await m.session.release();
    await batched.release();
  });

  it('gives concurrent greedy requests exactly the text each gets alone, with more requests than slots', async () => {
    const prompts = ['Once upon a time', 'Tom and Sue', 'The sun was hot and the little dog wanted to find some shade under a big tree', 'Lily', 'One day, a bird', 'Max had a red ball'];
    const requests: GenerationRequest[] = prompts.map((p, i) => ({ promptTokens: m.tokenizer.encode(p), maxTokens: 12 + 3 * i, sampling: greedy }));
    const alone = [];
    for (const r of requests) alone.push((await generateText(m.session, m.tokenizer, r)).text);
    // A small prefill chunk forces long prompts to interleave with running decodes.
    const scheduler = new BatchScheduler(batched, m.tokenizer, { maxQueue: 16, prefillChunk: 4, requestTimeoutMs: 0 });
    const together = await Promise.all(requests.map((r) => collect(scheduler.submit(r))));
    assert.deepEqual(together.map((t) => t.text), alone);
    assert.equal(scheduler.stats().running, 0);
  });

  it('frees the slot of a request whose consumer stops reading', async () => {
    const scheduler = new BatchScheduler(batched, m.tokenizer, { maxQueue: 4, prefillChunk: 64, requestTimeoutMs: 0 });
    const h = scheduler.submit({ promptTokens: m.tokenizer.encode('Once'), maxTokens: 200, sampling: greedy, ignoreEos: true });
    let n = 0;
    for await (const e of h.events) if (e.type === 'token' && ++n === 3) break;
    await until(() => scheduler.stats().running === 0);
    assert.equal(scheduler.stats().kvTokensUsed, 0);
  });

  it('ends a request with reason "abort" when its signal fires, and others keep going', async () => {
    const scheduler = new BatchScheduler(batched, m.tokenizer, { maxQueue: 4, prefillChunk: 64, requestTimeoutMs: 0 });
    const ac = new AbortController();
    const aborted = scheduler.submit({ promptTokens: m.tokenizer.encode('Once'), maxTokens: 200, sampling: greedy, ignoreEos: true, signal: ac.signal });
    const other = scheduler.submit({ promptTokens: m.tokenizer.encode('Once upon a time'), maxTokens: 16, sampling: greedy });
    setTimeout(() => ac.abort(), 20);
    const [a, o] = await Promise.all([collect(aborted), collect(other)]);
    assert.equal(a.reason, 'abort');
    assert.ok(a.tokens < 200);
    assert.equal(o.text, ', there was a little girl named Lily. She loved to play');
  });

  it('refuses a submission when the waiting queue is full', async () => {
    const single = await ModelSession.create(m.model.spec, m.model.weights, { maxBatch: 1, maxContext: 256, threads: 1 });
    const scheduler = new BatchScheduler(single, m.tokenizer, { maxQueue: 1, prefillChunk: 64, requestTimeoutMs: 0 });
    const long = { promptTokens: m.tokenizer.encode('Once'), maxTokens: 100, sampling: greedy, ignoreEos: true };
    const first = scheduler.submit(long);
    await until(() => scheduler.stats().running === 1);
    const second = scheduler.submit(long);
    assert.throws(() => scheduler.submit(long), { name: 'QueueFullError' });
    await Promise.all([collect(first), collect(second)]);
    await single.release();
  });

  it('finishes a request past its deadline with reason "timeout"', async () => {
    const scheduler = new BatchScheduler(batched, m.tokenizer, { maxQueue: 4, prefillChunk: 64, requestTimeoutMs: 30 });
    const r = await collect(scheduler.submit({ promptTokens: m.tokenizer.encode('Once'), maxTokens: 240, sampling: greedy, ignoreEos: true }));
    assert.equal(r.reason, 'timeout');
  });

  it('rejects prompts that fill the context and bad sampling parameters at submission', () => {
    const scheduler = new BatchScheduler(batched, m.tokenizer, { maxQueue: 4, prefillChunk: 64, requestTimeoutMs: 0 });
    assert.throws(() => scheduler.submit({ promptTokens: new Array(256).fill(5), maxTokens: 1, sampling: greedy }), { name: 'ContextLengthError' });
    assert.throws(() => scheduler.submit({ promptTokens: [1], maxTokens: 1, sampling: { ...greedy, topP: 0 } }), { name: 'SamplingParamsError' });
    assert.equal(scheduler.stats().waiting, 0);
  });

  it('drains: finishes accepted requests, then refuses new ones', async () => {
    const scheduler = new BatchScheduler(batched, m.tokenizer, { maxQueue: 4, prefillChunk: 64, requestTimeoutMs: 0 });
    const pending = collect(scheduler.submit({ promptTokens: m.tokenizer.encode('Once upon a time'), maxTokens: 16, sampling: greedy }));
    await scheduler.drain(10_000);
    assert.equal((await pending).reason, 'length');
    assert.throws(() => scheduler.submit({ promptTokens: [1], maxTokens: 1, sampling: greedy }), { name: 'SchedulerClosedError' });
  });
});
