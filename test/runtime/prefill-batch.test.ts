import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateText } from '../../src/runtime/engine/generate.ts';
import { freshPromptGroups, ModelSession, type PrefillEntry } from '../../src/runtime/engine/ort-decoder-session.ts';
import { openModel, type OpenedModel } from '../../src/runtime/engine/open-model.ts';
import { defaultSamplingParams } from '../../src/runtime/engine/sampling-params.ts';
import { BatchScheduler } from '../../src/runtime/engine/scheduler.ts';
import type { RequestHandle } from '../../src/runtime/engine/scheduler-types.ts';
import type { GenerationRequest } from '../../src/runtime/engine/sequence.ts';
import { argmax, maxAbsDiff } from '../helpers/logits.ts';
import { slotCache } from '../helpers/slot-cache.ts';

const greedy = defaultSamplingParams({ temperature: 0 });

/** Counts the ONNX Runtime runs a session makes (its private InferenceSession). */
function countRuns(session: ModelSession): { runs: number } {
  const counter = { runs: 0 };
  const ort = (session as unknown as { session: { run: (...a: unknown[]) => Promise<unknown> } }).session;
  const run = ort.run.bind(ort);
  ort.run = (...a: unknown[]) => {
    counter.runs++;
    return run(...a);
  };
  return counter;
}

async function collect(h: RequestHandle): Promise<string> {
  let text = '';
  for await (const e of h.events) text += e.text;
  return text;
}

describe('batched prefill across requests', () => {
  let m: OpenedModel;
  let one: ModelSession;
  let batched: ModelSession;
  before(async () => {
    m = await openModel({ maxContext: 256, threads: 1 });
    one = await ModelSession.create(m.model.spec, m.model.weights, { maxBatch: 5, maxContext: 256, threads: 1, batchPrefill: false });
    batched = await ModelSession.create(m.model.spec, m.model.weights, { maxBatch: 5, maxContext: 256, threads: 1, batchPrefill: true });
  });
  after(async () => {
    await m.session.release();
    await one.release();
    await batched.release();
  });

  it('builds the packed-token graph only where prompts are batched (off, the packing would only cost gathers)', () => {
    assert.equal(batched.graph.packedTokens, true);
    assert.equal(one.graph.packedTokens, false);
  });

  it('a batched prefill gives each sequence the logits and cache of its own prefill, and leaves a decoding slot alone', async () => {
    const V = m.model.spec.vocabSize;
    // Slot 1 is mid-generation when the burst arrives: prompt, then 5 greedy decode steps.
    const running = m.tokenizer.encode('Once upon a time, there was a big dog');
    const start = async (s: ModelSession) => {
      let logits = await s.prefill(1, running);
      const tokens: number[] = [];
      for (let i = 0; i < 5; i++) {
        tokens.push(argmax(logits));
        [logits] = (await s.decode([{ slot: 1, token: tokens[tokens.length - 1]! }])) as [Float32Array];
      }
      return { logits, tokens };
    };
    const [ref1, bat1] = [await start(one), await start(batched)];
    assert.deepEqual(bat1.tokens, ref1.tokens);
    const before1 = slotCache(batched, 1);

    // Fresh prompts of 3 to 40-odd tokens into slots around the decoding one (0, 2, 3, 4).
    const texts = ['Tom had a', 'The sun was hot and the little dog wanted to find some shade under a big tree near the river', 'Lily and Ben went to the park to play on the swings', 'One day, a bird'];
    const entries: PrefillEntry[] = texts.map((t, k) => ({ slot: [0, 2, 3, 4][k]!, tokens: m.tokenizer.encode(t) }));
    const lengths = entries.map((e) => e.tokens.length);
    assert.equal(new Set(lengths).size, lengths.length, `prompt lengths differ: ${lengths}`);

    const sequential: Float32Array[] = [];
    for (const e of entries) sequential.push(await one.prefill(e.slot, e.tokens));
    const runs = countRuns(batched);
    const together = await batched.prefillBatch(entries);
    const groups = freshPromptGroups(entries, () => 0, batched.prefillChunk);
    assert.ok(groups.length >= 1 && groups.every((g) => g.length >= 2), `groups ${JSON.stringify(groups)}`);
    assert.equal(runs.runs, groups.length + (entries.length - groups.flat().length), 'one ORT run per batch, one per lone prompt');
    entries.forEach((e, k) => {
      assert.equal(batched.length(e.slot), e.tokens.length);
      const diff = maxAbsDiff(together[k]!, sequential[k]!);
      assert.ok(diff <= 1e-4, `slot ${e.slot} (${e.tokens.length} tokens): max |Δlogit| ${diff}`);
      const [a, b] = [slotCache(batched, e.slot), slotCache(one, e.slot)];
      const cacheDiff = Math.max(...a.map((x, i) => maxAbsDiff(x, b[i]!)));
      assert.ok(cacheDiff <= 1e-4, `slot ${e.slot} cache: max |Δ| ${cacheDiff}`);
    });
    // The decoding slot's cache is bit-for-bit what it was.
    const after1 = slotCache(batched, 1);
    after1.forEach((x, i) => assert.deepEqual(x, before1[i]!, `slot 1 cache block ${i} changed`));

    // 16 greedy decode steps for all five slots at once: the same tokens on both sessions.
    const next = (ls: readonly Float32Array[]) => ls.map((l) => argmax(l));
    let refLogits = [ref1.logits, ...sequential];
    let batLogits = [bat1.logits, ...together];
    const slots = [1, ...entries.map((e) => e.slot)];
    for (let step = 0; step < 16; step++) {
      const [rt, bt] = [next(refLogits), next(batLogits)];
      assert.deepEqual(bt, rt, `step ${step}`);
      const worst = Math.max(...refLogits.map((l, k) => maxAbsDiff(l, batLogits[k]!)));
      assert.ok(worst <= 1e-4, `step ${step}: max |Δlogit| ${worst}`);
      refLogits = await one.decode(slots.map((slot, k) => ({ slot, token: rt[k]! })));
      batLogits = await batched.decode(slots.map((slot, k) => ({ slot, token: bt[k]! })));
    }
    for (const s of [0, 1, 2, 3, 4]) {
      one.reset(s);
      batched.reset(s);
    }
    assert.equal(V, together[0]!.length);
  });

  it('prefills one by one what GQA cannot batch: a slot with a cached past, and the lone fresh prompt left', async () => {
    const a = m.tokenizer.encode('Max had a red ball');
    const b = m.tokenizer.encode('The cat sat on the mat');
    await one.prefill(0, a.slice(0, 3));
    await batched.prefill(0, a.slice(0, 3));
    const runs = countRuns(batched);
    const [ra, rb] = [await one.prefill(0, a.slice(3)), await one.prefill(1, b)];
    const [ba, bb] = await batched.prefillBatch([
      { slot: 0, tokens: a.slice(3) },
      { slot: 1, tokens: b },
    ]);
    assert.equal(runs.runs, 2);
    assert.ok(maxAbsDiff(ba!, ra) <= 1e-4 && maxAbsDiff(bb!, rb) <= 1e-4);
    for (const s of [0, 1]) {
      one.reset(s);
      batched.reset(s);
    }
    await assert.rejects(batched.prefillBatch([{ slot: 0, tokens: [1] }, { slot: 0, tokens: [2] }]), /slot 0 appears twice/);
    await assert.rejects(batched.prefillBatch([{ slot: 0, tokens: [] }]), /at least one token/);
  });

  it('batches with int8 weights (MatMulNBits) and float16 activations too, matching their own sequential prefill', async () => {
    const prompts = ['Once upon a time', 'The sun was hot and the little dog wanted to find some shade', 'Lily'].map((t) => m.tokenizer.encode(t));
    for (const target of [{ device: 'cpu' as const, dtype: 'float32' as const, weights: 'int8' as const }, { device: 'cpu' as const, dtype: 'float16' as const }]) {
      const s = await ModelSession.create(m.model.spec, m.model.weights, { maxBatch: 3, maxContext: 64, threads: 1, target });
      try {
        const runs = countRuns(s);
        const together = await s.prefillBatch(prompts.map((tokens, slot) => ({ slot, tokens })));
        assert.equal(runs.runs, 1, `${target.weights ?? target.dtype}: one run`);
        for (const [slot, tokens] of prompts.entries()) {
          s.reset(slot);
          const alone = await s.prefill(slot, tokens);
          const diff = maxAbsDiff(together[slot]!, alone);
          assert.ok(diff <= 1e-4, `${target.weights ?? target.dtype} slot ${slot}: max |Δlogit| ${diff}`);
        }
      } finally {
        await s.release();
      }
    }
  });

  it('returns last-position logits on a logits "all" session too (one by one)', async () => {
    const all = await ModelSession.create(m.model.spec, m.model.weights, { maxBatch: 2, maxContext: 64, logits: 'all', threads: 1 });
    try {
      const p = [m.tokenizer.encode('Once upon a time'), m.tokenizer.encode('Tom and Sue')];
      const got = await all.prefillBatch(p.map((tokens, slot) => ({ slot, tokens })));
      const V = m.model.spec.vocabSize;
      for (const [slot, tokens] of p.entries()) {
        const ref = await one.prefill(slot, tokens);
        one.reset(slot);
        assert.equal(got[slot]!.length, V);
        assert.ok(maxAbsDiff(got[slot]!, ref) <= 1e-4);
      }
    } finally {
      await all.release();
    }
  });

  it('groups fresh prompts while padding to the longest stays within a factor of the real tokens', () => {
    const e = (n: number, slot: number, past = 0): PrefillEntry & { past: number } => ({ slot, tokens: new Array(n).fill(1), past });
    const entries = [e(30, 0), e(3, 1), e(17, 2), e(9, 3), e(20, 4, 5), e(600, 5)];
    const length = (slot: number) => entries.find((x) => x.slot === slot)!.past;
    // 600 > chunk 512 and the slot-4 piece has a past: neither batches. 30+17 pad to 60 ≤ 70.5;
    // + 9 would pad to 90 > 84, so 9 and 3 form their own batch (18 ≤ 18).
    assert.deepEqual(freshPromptGroups(entries, length, 512, 1.5), [
      [0, 2],
      [3, 1],
    ]);
    assert.deepEqual(freshPromptGroups([e(5, 0)], () => 0, 512), []);
    // The default (4x) takes all four fresh prompts: 4 × 30 = 120 ≤ 4 × 59.
    assert.deepEqual(freshPromptGroups(entries, length, 512), [[0, 2, 3, 1]]);
  });

  it('concurrent greedy requests get the same text as the same requests one at a time, prompts batched', async () => {
    const prompts = ['Once upon a time', 'Tom and Sue', 'The sun was hot and the little dog wanted to find some shade', 'Lily', 'One day, a bird', 'Max had a red ball', 'The cat and the dog were friends', 'Sam'];
    const requests: GenerationRequest[] = prompts.map((p, i) => ({ promptTokens: m.tokenizer.encode(p), maxTokens: 10 + 2 * i, sampling: greedy }));
    const alone: string[] = [];
    for (const r of requests) alone.push((await generateText(m.session, m.tokenizer, r)).text);
    // 5 slots for 8 requests: the first burst prefills together, later ones join while others decode.
    const calls: number[] = [];
    const prefillBatch = batched.prefillBatch.bind(batched);
    batched.prefillBatch = (entries) => {
      calls.push(entries.length);
      return prefillBatch(entries);
    };
    try {
      const scheduler = new BatchScheduler(batched, m.tokenizer, { maxQueue: 16, prefillChunk: 256, requestTimeoutMs: 0 });
      const together = await Promise.all(requests.map((r) => collect(scheduler.submit(r))));
      assert.deepEqual(together, alone);
      assert.ok(calls.some((n) => n >= 2), `prefillBatch calls: ${calls}`);
      const s = scheduler.stats();
      assert.equal(s.engine.prefillTokens, requests.reduce((n, r) => n + r.promptTokens.length, 0));
      assert.ok(s.engine.prefillCalls < requests.length, `${s.engine.prefillCalls} prefill calls for ${requests.length} requests`);
    } finally {
      delete (batched as { prefillBatch?: unknown }).prefillBatch;
    }
  });
});
