import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import {
  addSeries,
  deltaSeries,
  type HistogramSeries,
  histogramQuantile,
  parseHistograms,
  quantileBucket,
  snapshotDelta,
  summarizeSeries,
} from '../../scripts/speedup/histogram.ts';
import { LATENCY_BUCKETS } from '../../src/server/metrics.ts';

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} ≉ ${b}`);

/** Cumulative buckets from [le, count] pairs (+Inf appended with the last count unless given). */
function series(pairs: [number, number][], sum = 0): HistogramSeries {
  const buckets = pairs.map(([le, count]) => ({ le, count }));
  if (buckets[buckets.length - 1]!.le !== Infinity) buckets.push({ le: Infinity, count: buckets[buckets.length - 1]!.count });
  return { buckets, sum, count: buckets[buckets.length - 1]!.count };
}

describe('histogramQuantile (Prometheus semantics)', () => {
  // 2 observations ≤ 0.1, 4 in (0.1, 0.5], 4 in (0.5, 1].
  const s = series([
    [0.1, 2],
    [0.5, 6],
    [1, 10],
  ]);

  it('interpolates linearly inside the bucket that holds the rank', () => {
    close(histogramQuantile(0.5, s), 0.4); // rank 5: 3rd of 4 in (0.1, 0.5]
    close(histogramQuantile(0.99, s), 0.9875); // rank 9.9: 3.9 of 4 in (0.5, 1]
    close(histogramQuantile(0.1, s), 0.05); // first bucket starts at 0
    close(histogramQuantile(0.6, s), 0.5); // rank 6 is exactly the top of (0.1, 0.5]
    close(histogramQuantile(1, s), 1);
    close(histogramQuantile(0, s), 0);
  });

  it('answers the highest finite bound when the rank falls in +Inf, NaN without data, ±Inf outside [0, 1]', () => {
    const tail = series([
      [0.1, 0],
      [1, 1],
      [Infinity, 3],
    ]);
    assert.equal(histogramQuantile(0.9, tail), 1);
    assert.ok(Number.isNaN(histogramQuantile(0.5, series([[1, 0]]))));
    assert.ok(Number.isNaN(histogramQuantile(0.5, { buckets: [{ le: 1, count: 3 }], sum: 1, count: 3 })), 'no +Inf bucket');
    assert.equal(histogramQuantile(-0.1, s), -Infinity);
    assert.equal(histogramQuantile(1.1, s), Infinity);
  });

  it('treats decreasing cumulative counts (subtraction noise) as flat, as Prometheus does', () => {
    const noisy = { buckets: [{ le: 0.1, count: 4 }, { le: 0.5, count: 3 }, { le: 1, count: 8 }, { le: Infinity, count: 8 }], sum: 0, count: 8 };
    close(histogramQuantile(0.5, noisy), 0.1); // rank 4 reached in the first bucket
  });

  it('names the bucket a quantile sits in', () => {
    assert.deepEqual(quantileBucket(0.5, s), { lower: 0.1, upper: 0.5 });
    assert.deepEqual(quantileBucket(0.99, s), { lower: 0.5, upper: 1 });
  });
});

describe('parseHistograms + deltas against a real prom-client exposition', () => {
  const registry = new Registry();
  const h = new Histogram({ name: 'mop_e2e_request_latency_seconds', help: 'x', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [registry] });
  const other = new Histogram({ name: 'mop_time_to_first_token_seconds', help: 'y', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [registry] });
  const names = ['mop_e2e_request_latency_seconds', 'mop_time_to_first_token_seconds'];

  it('reads buckets, sum and count per model; the delta holds only the observations in between', async () => {
    h.observe({ model: 'dense' }, 3); // before: must not count
    h.observe({ model: 'mop-40' }, 0.02);
    const before = parseHistograms(await registry.metrics(), names);
    for (const v of [1.2, 1.4, 1.6, 2.0]) h.observe({ model: 'dense' }, v);
    for (const v of [0.6, 0.7, 0.8, 0.9]) h.observe({ model: 'mop-40' }, v);
    other.observe({ model: 'dense' }, 0.05);
    const after = parseHistograms(await registry.metrics(), names);

    const dense = snapshotDelta(after, before, 'mop_e2e_request_latency_seconds', 'dense')!;
    assert.equal(dense.count, 4);
    close(dense.sum, 6.2, 1e-9);
    assert.equal(dense.buckets.length, LATENCY_BUCKETS.length + 1);
    assert.equal(dense.buckets.at(-1)!.le, Infinity);
    // All four in (1, 2.5]: p50 = 1 + 1.5 × 2/4.
    close(histogramQuantile(0.5, dense), 1.75);
    const d = summarizeSeries(dense)!;
    close(d.mean, 1.55);

    const mop = snapshotDelta(after, before, 'mop_e2e_request_latency_seconds', 'mop-40')!;
    assert.equal(mop.count, 4);
    // (0.5, 0.75]: 0.6, 0.7 → cumulative 2; (0.75, 1]: 0.8, 0.9 → 4. p50 = rank 2 = top of (0.5, 0.75].
    close(histogramQuantile(0.5, mop), 0.75);
    close(summarizeSeries(mop)!.mean, 0.75);

    const ttft = snapshotDelta(after, before, 'mop_time_to_first_token_seconds', 'dense')!;
    assert.equal(ttft.count, 1, 'a series absent before counts from zero');
    assert.equal(snapshotDelta(after, before, 'mop_e2e_request_latency_seconds', 'nope'), undefined);
    assert.equal(summarizeSeries(snapshotDelta(after, after, 'mop_e2e_request_latency_seconds', 'dense')), null, 'no observations: null');
  });

  it('ignores other metrics, comments and label order; unescapes label values', () => {
    const text = [
      '# HELP mop_e2e_request_latency_seconds x',
      '# TYPE mop_e2e_request_latency_seconds histogram',
      'mop_e2e_request_latency_seconds_bucket{model="a\\"b",le="0.5"} 1',
      'mop_e2e_request_latency_seconds_bucket{le="+Inf",model="a\\"b"} 2',
      'mop_e2e_request_latency_seconds_sum{model="a\\"b"} 1.5',
      'mop_e2e_request_latency_seconds_count{model="a\\"b"} 2',
      'process_cpu_seconds_total 12',
      'mop_requests_total{model="a",outcome="success"} 3',
    ].join('\n');
    const snap = parseHistograms(text, ['mop_e2e_request_latency_seconds']);
    const s = snap.get('mop_e2e_request_latency_seconds')!.get('a"b')!;
    assert.deepEqual(s, { buckets: [{ le: 0.5, count: 1 }, { le: Infinity, count: 2 }], sum: 1.5, count: 2 });
    assert.equal(snap.size, 1);
  });

  it('adds the deltas of several rounds bucket by bucket', () => {
    const a = series([[0.1, 1], [1, 2]], 0.6);
    const b = series([[0.1, 0], [1, 3]], 2.1);
    const sum = addSeries(addSeries(undefined, a), b);
    assert.deepEqual(sum.buckets.map((x) => x.count), [1, 5, 5]);
    assert.equal(sum.count, 5);
    close(sum.sum, 2.7);
    assert.deepEqual(deltaSeries(sum, a).buckets.map((x) => x.count), [0, 3, 3]);
  });
});
