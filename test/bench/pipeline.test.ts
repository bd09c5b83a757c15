/**
 * The pieces around the measurement: batch planning, round order, prompt rotation, the decode-step
 * profile arithmetic (and one timing run of the `tiny` synthetic model), the peer's pure helpers,
 * and one end-to-end pass of measureModel on `tiny` (real server, admin API, load generator,
 * /metrics), small enough to run in seconds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { headOnlyModel, paramShares, profileRatio, timeDecode } from '../../scripts/speedup/decode-profile.ts';
import { binaryPackage, peerPrompt, summarizeEngine } from '../../scripts/speedup/llamacpp-peer.ts';
import { measureModel, planBatches, rotate, roundOrder, variantId } from '../../scripts/speedup/measure.ts';
import { syntheticVocabulary } from '../../src/runtime/model/synthetic.ts';
import { parameterCounts } from '../../src/runtime/model/spec.ts';
import { syntheticPresets, syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';

describe('measurement plan', () => {
  it('groups (ratio, strategy) pairs ratio-major into batches of at most maxLoaded', () => {
    const b = planBatches([0.2, 0.4], ['mop', 'depth', 'width'], 3);
    assert.deepEqual(
      b.map((x) => x.map((y) => variantId(y.strategy, y.ratio))),
      [
        ['mop-20', 'depth-20', 'width-20'],
        ['mop-40', 'depth-40', 'width-40'],
      ],
    );
    assert.deepEqual(planBatches([0.2, 0.4], ['mop'], 1).map((x) => x.length), [1, 1]);
    assert.equal(planBatches([0.4], ['mop', 'depth'], 5).length, 1);
  });

  it('alternates the running order per round and rotates prompts', () => {
    assert.deepEqual(roundOrder(['d', 'a', 'b'], 0), ['d', 'a', 'b']);
    assert.deepEqual(roundOrder(['d', 'a', 'b'], 1), ['b', 'a', 'd']);
    assert.deepEqual(rotate([1, 2, 3, 4], 5), [2, 3, 4, 1]);
    assert.deepEqual(rotate([1, 2, 3], 0), [1, 2, 3]);
  });
});

describe('decode-step profile', () => {
  it('computes the LM-head share and the bound for the 100m preset from parameter counts', () => {
    const spec = syntheticSpec(syntheticPresets['100m']);
    const s = paramShares(spec);
    assert.equal(s.lmHead, 32000 * 768);
    assert.equal(s.blocks, parameterCounts(spec).blocks);
    assert.ok(Math.abs(s.lmHeadShareOfStepWeights - s.lmHead / (s.lmHead + s.blocks)) < 1e-12);
    assert.equal(s.predictedRatio(0), 1);
    assert.ok(Math.abs(s.predictedRatio(1) - s.lmHeadShareOfStepWeights) < 1e-12);
    assert.ok(s.predictedRatio(0.4) > 0.61, 'the 0.61 target is out of reach by parameter count alone');
  });

  it('the step profile predicts the ratio from its parts', () => {
    const p = { blocksMs: 18, lmHeadMs: 6.8, overheadMs: 0.2 };
    assert.equal(profileRatio(p, 0), 1);
    assert.ok(Math.abs(profileRatio(p, 0.4) - (7 + 0.6 * 18) / 25) < 1e-12);
  });

  it('builds head-only models that keep the embedding and head, and times decode steps of a tiny model', async () => {
    const spec = syntheticSpec(syntheticPresets.tiny);
    const weights = syntheticWeights(spec, 1);
    const head = headOnlyModel(spec, weights);
    assert.deepEqual(head.spec.layers, [{ heads: 0, kvHeads: 0, headDim: spec.layers[0]!.headDim, ffn: 0 }]);
    assert.equal(head.weights.get('model.embed_tokens.weight'), weights.get('model.embed_tokens.weight'));
    const small = headOnlyModel(spec, weights, 16);
    assert.equal(small.spec.vocabSize, 16);
    const t = await timeDecode(spec.layers.length ? { spec, weights } : head, { batch: 2, promptTokens: 8, steps: 5, warmup: 1, threads: 1 });
    assert.equal(t.steps, 5);
    assert.ok(t.medianMs > 0 && t.meanMs > 0);
    const h = await timeDecode(head, { batch: 1, promptTokens: 4, steps: 3, warmup: 1, threads: 1 });
    assert.equal(h.steps, 3, 'a model with no attention and no MLP still runs');
  });

  it('reports the median decode step of an even number of steps as the mean of the two middle ones', async () => {
    const spec = syntheticSpec(syntheticPresets.tiny);
    const t = await timeDecode({ spec, weights: syntheticWeights(spec, 1) }, { batch: 1, promptTokens: 4, steps: 2, warmup: 1, threads: 1 });
    assert.equal(t.steps, 2);
    assert.ok(Math.abs(t.medianMs - t.meanMs) < 1e-9, `median ${t.medianMs} of two steps is their mean ${t.meanMs}`);
  });
});

describe('llama.cpp peer helpers', () => {
  it('uses the same fixed prompt ids for both engines, inside the vocabulary', () => {
    const p = peerPrompt(32000, 32, 1);
    assert.equal(p.length, 32);
    assert.equal(p[0], 1);
    assert.ok(p.every((t) => t >= 0 && t < 32000));
    assert.deepEqual(peerPrompt(32000, 32, 1), p);
    assert.ok(peerPrompt(512, 16, 1).every((t) => t < 512));
  });

  it('knows the prebuilt binary package per platform', () => {
    assert.equal(binaryPackage('linux', 'x64'), '@node-llama-cpp/linux-x64');
    assert.equal(binaryPackage('sunos', 'x64'), null);
  });

  it('reports the best repetition and the medians', () => {
    const t = (d: number, p: number) => ({ promptMs: 1, decodeMs: 1, decodeTokens: 64, promptTokensPerSec: p, decodeTokensPerSec: d, medianStepMs: 1000 / d });
    const e = summarizeEngine([t(40, 300), t(60, 100), t(50, 200)]);
    assert.equal(e.best.decodeTokensPerSec, 60);
    assert.equal(e.medianDecodeTokensPerSec, 50);
    assert.equal(e.medianPromptTokensPerSec, 200);
  });

  it('the synthetic vocabulary tokenizes ASCII text into byte tokens the model knows', () => {
    const tok = createTokenizer(syntheticVocabulary(256));
    const ids = tok.encode('Once upon a time');
    assert.equal(ids[0], 1, 'BOS');
    assert.ok(ids.length >= 16 && ids.slice(1).every((i) => i >= 3 && i < 256));
  });
});

describe('measureModel end to end (tiny model)', () => {
  it('prunes through the admin API, drives identical load per variant and reads client and server figures', { timeout: 120_000 }, async () => {
    const lines: string[] = [];
    const s = await measureModel({
      model: 'tiny',
      strategies: ['mop', 'depth'],
      ratios: [0.4],
      concurrency: [1, 2],
      requests: new Map([
        [1, 2],
        [2, 4],
      ]),
      rounds: 2,
      maxTokens: 4,
      prompts: ['Once upon a time', 'The cat sat', 'A dog ran far away'],
      samples: 2,
      seqLen: 16,
      threads: 1,
      maxLoaded: 1,
      tolerance: 0.1,
      runTimeoutSec: 60,
      pruneTimeoutSec: 60,
      profile: { steps: 3, warmup: 1, promptTokens: 8 },
      budget: 'params',
      log: (l) => lines.push(l),
    });
    assert.equal(s.error, null, lines.join('\n'));
    assert.deepEqual(
      s.variants.map((v) => `${v.id}@${v.batch}`),
      ['dense@1', 'mop-40@1', 'dense@2', 'depth-40@2'],
      'one pruned variant loaded at a time, each batch with its own dense',
    );
    assert.equal(s.profiles.length, 2);
    for (const v of s.variants) {
      assert.equal(v.error, null);
      assert.deepEqual(v.measurements.map((m) => m.concurrency), [1, 2]);
      for (const m of v.measurements) {
        const n = m.concurrency === 1 ? 2 : 4;
        assert.equal(m.client.ok, n, `${v.id} c=${m.concurrency}`);
        assert.equal(m.client.completionTokens, 4 * n, 'ignore_eos: every request generates max_tokens');
        assert.equal(m.server.e2e?.count, n, 'the histogram delta counts exactly this run');
        assert.equal(m.server.tpot?.count, 3 * n);
        const e = m.engine!;
        assert.equal(e.prefillTokens, Math.round(m.client.promptTokensMean * n), 'the engine prefilled exactly the prompts of these requests');
        assert.ok(e.decodeSteps >= 3 && e.decodeRows === 3 * n, `${e.decodeSteps} steps, ${e.decodeRows} rows: one row per generated token after the first`);
        assert.ok(e.decodeMs > 0 && e.prefillMs > 0);
        if (v.strategy === 'dense') assert.equal(m.ratio, null);
        else {
          assert.ok(m.ratio && Number.isFinite(m.ratio.clientP50) && Number.isFinite(m.ratio.serverMean));
          assert.ok(m.agreement.ratio);
          assert.equal(m.ratio.paired?.rounds, 2, 'one pair per round');
        }
      }
      if (v.strategy !== 'dense') {
        assert.ok(Math.abs(v.achieved - 0.4) < 0.05, `achieved ${v.achieved}`);
        assert.ok(v.params.blocks < s.dense.blocks);
      }
    }
    assert.ok(lines.some((l) => l.includes('unloaded mop-40')));
  });
});
