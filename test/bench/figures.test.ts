import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RequestRecord } from '../../loadtest/load-generator.ts';
import { agreement, clientFigures, finishMeasurement, pairedRatio, ratios, serverStats } from '../../scripts/speedup/figures.ts';

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} ≉ ${b}`);

function record(i: number, e2eMs: number, o: Partial<RequestRecord> = {}): RequestRecord {
  return {
    index: i,
    model: 'm',
    startMs: 0,
    ok: true,
    error: null,
    status: 200,
    e2eMs,
    ttfbMs: 1,
    ttftMs: e2eMs / 4,
    itlMs: [],
    tpotMs: (e2eMs - e2eMs / 4) / 63,
    completionTokens: 64,
    promptTokens: 20,
    tokensFrom: 'usage',
    contentChunks: 64,
    errorMessage: null,
    ...o,
  };
}

describe('agreement', () => {
  it('agrees within the tolerance, relative to the client figure', () => {
    assert.deepEqual(agreement(100, 109), { client: 100, server: 109, relDiff: 0.09, tolerance: 0.1, agree: true });
    assert.equal(agreement(100, 91).agree, true);
    assert.equal(agreement(100, 110).agree, true, 'the boundary agrees');
    assert.equal(agreement(100, 111).agree, false);
    assert.equal(agreement(0.6, 0.5).agree, false);
    assert.equal(agreement(0.6, 0.62, 0.05).agree, true);
    assert.equal(agreement(0.6, 0.64, 0.05).agree, false);
  });

  it('never agrees on a missing or zero reference', () => {
    assert.equal(agreement(Number.NaN, 1).agree, false);
    assert.equal(agreement(0, 1).agree, false);
    assert.equal(agreement(1, Number.NaN).agree, false);
  });
});

describe('client figures, ratios and measurements', () => {
  const dense = clientFigures([record(0, 1000), record(1, 1200), record(2, 1100), record(3, 0, { ok: false, error: 'timeout', completionTokens: null })], 4);
  const pruned = clientFigures([record(0, 600), record(1, 700), record(2, 650)], 2);

  it('summarises successful requests only and counts errors by kind', () => {
    assert.equal(dense.sent, 4);
    assert.equal(dense.ok, 3);
    assert.equal(dense.failed, 1);
    assert.deepEqual(dense.errors, { timeout: 1 });
    assert.equal(dense.e2e!.p50, 1100);
    close(dense.e2e!.mean, 1100);
    assert.equal(dense.ttft!.p50, 275);
    assert.equal(dense.completionTokens, 192);
    assert.equal(dense.tokensPerSec, 48);
    assert.equal(dense.promptTokensMean, 20);
  });

  it('takes ratios pruned / dense from the client (p50, mean) and the server (mean, interpolated p50)', () => {
    const serverDense = { e2e: { count: 3, mean: 1090, p50: 1750, p99: 2480 }, ttft: null, tpot: null };
    const serverPruned = { e2e: { count: 3, mean: 640, p50: 700, p99: 740 }, ttft: null, tpot: null };
    const r = ratios({ client: pruned, server: serverPruned }, { client: dense, server: serverDense });
    close(r.clientP50, 650 / 1100);
    close(r.clientMean, 650 / 1100);
    close(r.serverMean, 640 / 1090);
    close(r.serverP50, 700 / 1750);
    const m = finishMeasurement(1, pruned, serverPruned, { client: dense, server: serverDense });
    assert.equal(m.agreement.ratio!.agree, true);
    close(m.agreement.ratio!.relDiff, Math.abs(640 / 1090 - 650 / 1100) / (650 / 1100));
    assert.equal(m.agreement.e2eMean!.agree, true);
    const d = finishMeasurement(1, dense, serverDense, undefined);
    assert.equal(d.ratio, null);
    assert.equal(d.agreement.ratio, null);
  });

  it('gives NaN ratios, not a crash, when a side has no data', () => {
    const empty = clientFigures([], 0);
    const r = ratios({ client: empty, server: { e2e: null, ttft: null, tpot: null } }, { client: dense, server: { e2e: null, ttft: null, tpot: null } });
    assert.ok(Number.isNaN(r.clientP50));
    assert.ok(Number.isNaN(r.serverMean));
    assert.equal(finishMeasurement(8, empty, { e2e: null, ttft: null, tpot: null }, { client: dense, server: { e2e: null, ttft: null, tpot: null } }).agreement.ratio, null);
  });

  it('pairs rounds: per-round ratios, their median and range, skipping rounds without data', () => {
    assert.deepEqual(pairedRatio([60, 70, 80], [100, 100, 100]), { median: 0.7, min: 0.6, max: 0.8, rounds: 3 });
    assert.deepEqual(pairedRatio([60, Number.NaN, 90, 50], [100, 100, 100, 100]), { median: 0.6, min: 0.5, max: 0.9, rounds: 3 });
    const even = pairedRatio([60, 80], [100, 100])!;
    assert.ok(Math.abs(even.median - 0.7) < 1e-12);
    assert.equal(pairedRatio([1], [0]), null);
    // One disturbed dense round moves one pair, not the median.
    assert.equal(pairedRatio([70, 70, 70, 70, 70], [100, 100, 300, 100, 100])!.median, 0.7);
    const m = finishMeasurement(1, pruned, { e2e: null, ttft: null, tpot: null }, { client: dense, server: { e2e: null, ttft: null, tpot: null }, roundE2eMs: [1000, 1100] }, 0.1, { roundE2eMs: [600, 660] });
    assert.deepEqual(m.ratio!.paired, { median: 0.6, min: 0.6, max: 0.6, rounds: 2 });
    assert.deepEqual(m.roundE2eMs, [600, 660]);
  });

  it('converts server histogram seconds to ms', () => {
    const s = serverStats({ buckets: [{ le: 1, count: 1 }, { le: 2.5, count: 2 }, { le: Infinity, count: 2 }], sum: 2.5, count: 2 })!;
    assert.equal(s.mean, 1250);
    assert.equal(s.count, 2);
    assert.equal(s.p50, 1000);
    assert.equal(serverStats(undefined), null);
  });
});
