import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { KvCache } from '../../../src/runtime/engine/kv-cache.ts';
import { ModelSession } from '../../../src/runtime/engine/ort-decoder-session.ts';
import { openModel, type OpenedModel } from '../../../src/runtime/engine/open-model.ts';
import { defaultSamplingParams } from '../../../src/runtime/engine/sampling-params.ts';
import { BatchScheduler } from '../../../src/runtime/engine/scheduler.ts';
import type { RequestHandle, SchedulerOptions } from '../../../src/runtime/engine/scheduler-types.ts';
import type { GenerationRequest } from '../../../src/runtime/engine/sequence.ts';
import { slotCache } from '../../helpers/slot-cache.ts';

const greedy = defaultSamplingParams({ temperature: 0 });

async function collect(h: RequestHandle): Promise<string> {
  let text = '';
  for await (const e of h.events) text += e.text;
  return text;
}

/** Counts the session's batched prefill runs (its private prefillFresh) until restored. */
function countBatchedPrefills(session: ModelSession): { runs: number; restore: () => void } {
  const target = session as unknown as { prefillFresh: (batch: unknown[]) => Promise<unknown> };
  const original = target.prefillFresh;
  const counter = { runs: 0, restore: () => void (target.prefillFresh = original) };
  target.prefillFresh = function (this: unknown, batch: unknown[]) {
    counter.runs++;
    return original.call(this, batch);
  };
  return counter;
}

const SYSTEM = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine with her dog and her big red ball. Every morning she ran to the park, and every evening she came home tired and happy.';
const OTHER = 'Tom had a big red truck. He liked to drive it around the garden and make loud noises all day long with his friends.';
const SUFFIXES = [' One day', ' Tom came to', ' The sun was hot and the dog wanted to find some shade under a big tree.', ' Lily said', ' A bird sang'];

describe('prefix caching in the scheduler', () => {
  let m: OpenedModel;
  let session: ModelSession;
  before(async () => {
    m = await openModel({ maxContext: 256, threads: 1 });
    session = await ModelSession.create(m.model.spec, m.model.weights, { maxBatch: 4, maxContext: 256, threads: 1, batchPrefill: true });
  });
  after(async () => {
    await m.session.release();
    await session.release();
  });

  const request = (text: string, maxTokens = 12): GenerationRequest => ({ promptTokens: m.tokenizer.encode(text), maxTokens, sampling: greedy });
  const options = (prefixCacheMb: number, prefillChunk: number): SchedulerOptions => ({ maxQueue: 16, prefillChunk, requestTimeoutMs: 0, prefixCacheMb });

  /**
   * Two fresh prompts together (a batched prefill, which fills the cache), then a burst that shares
   * their starts beside two prompts that share nothing (batched together again).
   */
  async function run(scheduler: BatchScheduler): Promise<string[]> {
    const burst = (prompts: string[]) => Promise.all(prompts.map((p) => collect(scheduler.submit(request(p)))));
    const first = await burst([SYSTEM + SUFFIXES[0], OTHER + ' The end.']);
    const second = await burst(['Max had a red ball and a blue kite', 'A cat sat on the mat', ...SUFFIXES.slice(1, 3).map((s) => SYSTEM + s), OTHER + ' Then it rained.']);
    const third = await burst(SUFFIXES.slice(3).map((s) => SYSTEM + s));
    return [...first, ...second, ...third];
  }

  for (const chunk of [256, 8]) {
    it(`gives greedy requests sharing a prompt start the same text with the cache on and off (${chunk === 256 ? "batched prefill of fresh prompts" : "prompts prefilled in chunks of 8"})`, async () => {
      const off = new BatchScheduler(session, m.tokenizer, options(0, chunk));
      const on = new BatchScheduler(session, m.tokenizer, options(4, chunk));
      const expected = await run(off);
      assert.equal(off.stats().prefixCache, undefined);
      const batches = countBatchedPrefills(session);
      assert.deepEqual(await run(on), expected);
      if (chunk === 256) assert.ok(batches.runs >= 2, `batched prefills with the cache on: ${batches.runs}`);
      batches.restore();
      const stats = on.stats().prefixCache!;
      const shared = m.tokenizer.encode(SYSTEM).length;
      // Four later requests each reused the whole blocks of the shared start (cached by a batched prefill).
      assert.ok(stats.hitTokens >= 4 * 16 * Math.floor((shared - 1) / 16), `hits ${stats.hitTokens}`);
      assert.ok(stats.queryTokens > stats.hitTokens);
      assert.ok(stats.bytes > 0 && stats.bytes <= stats.capacityBytes);
    });
  }

  it('recomputes the last prompt token of a prompt cached whole, and answers it as before', async () => {
    const on = new BatchScheduler(session, m.tokenizer, options(4, 64));
    let prompt = m.tokenizer.encode(SYSTEM);
    prompt = prompt.slice(0, 32);
    const again = { promptTokens: prompt, maxTokens: 10, sampling: greedy };
    const first = await collect(on.submit(again));
    const second = await collect(on.submit(again));
    assert.equal(second, first);
    // Two whole blocks were cached; the second request reused only the first, leaving its last token to prefill.
    assert.equal(on.stats().prefixCache!.hitTokens, 16);
  });

  it('restores into a slot exactly the positions read out of another', async () => {
    const cache = session.cache as KvCache;
    session.reset(0);
    session.reset(1);
    await session.prefill(0, m.tokenizer.encode(SYSTEM).slice(0, 48));
    const ranges = [0, 16, 32].map((from) => cache.readPositions(0, from, 16));
    cache.restorePositions(1, ranges, 16);
    assert.equal(session.length(1), 48);
    assert.deepEqual(slotCache(session, 1), slotCache(session, 0));
    assert.throws(() => cache.restorePositions(1, ranges, 16), /already holds/);
    assert.throws(() => cache.readPositions(0, 40, 16), /not all cached/);
    session.reset(0);
    session.reset(1);
  });

  it('caches nothing with a budget of 0 MiB', async () => {
    const off = new BatchScheduler(session, m.tokenizer, options(0, 64));
    await collect(off.submit(request(SYSTEM)));
    assert.equal(off.stats().prefixCache, undefined);
  });
});
