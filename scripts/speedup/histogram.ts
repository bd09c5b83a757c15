/**
 * Server-side latency figures from the server's own Prometheus histograms: parse the text
 * exposition of GET /metrics, take the difference between a scrape after and one before a load run
 * (so only that run's requests count), and read mean (Δsum / Δcount) and quantiles from the
 * difference as Prometheus' `histogram_quantile` does (linear interpolation inside the bucket that
 * holds the rank; the +Inf bucket answers the highest finite bound). All pure.
 */

/** One histogram series: cumulative bucket counts by upper bound (ascending, +Inf last), sum and count. */
export interface HistogramSeries {
  buckets: { le: number; count: number }[];
  sum: number;
  count: number;
}

/** metric name → label `model` value → series. */
export type HistogramSnapshot = Map<string, Map<string, HistogramSeries>>;

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function parseLabels(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const m of text.matchAll(LABEL)) out[m[1]!] = m[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
  return out;
}

function parseValue(v: string): number {
  if (v === '+Inf') return Number.POSITIVE_INFINITY;
  if (v === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(v);
}

/**
 * The histograms named in `names` from a Prometheus text exposition, keyed by their `model` label
 * (series without one are keyed ''). Other metrics and comments are ignored.
 */
export function parseHistograms(text: string, names: readonly string[]): HistogramSnapshot {
  const wanted = new Set(names);
  const snap: HistogramSnapshot = new Map();
  const series = (name: string, model: string): HistogramSeries => {
    let byModel = snap.get(name);
    if (!byModel) snap.set(name, (byModel = new Map()));
    let s = byModel.get(model);
    if (!s) byModel.set(model, (s = { buckets: [], sum: 0, count: 0 }));
    return s;
  };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const [, metric, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
    const value = parseValue(valueText);
    const suffix = metric.endsWith('_bucket') ? '_bucket' : metric.endsWith('_sum') ? '_sum' : metric.endsWith('_count') ? '_count' : '';
    if (!suffix) continue;
    const base = metric.slice(0, -suffix.length);
    if (!wanted.has(base)) continue;
    const labels = parseLabels(labelText);
    const s = series(base, labels.model ?? '');
    if (suffix === '_bucket') {
      if (labels.le === undefined) continue;
      s.buckets.push({ le: parseValue(labels.le), count: value });
    } else if (suffix === '_sum') s.sum = value;
    else s.count = value;
  }
  for (const byModel of snap.values()) for (const s of byModel.values()) s.buckets.sort((a, b) => a.le - b.le);
  return snap;
}

/** after − before, bucket by bucket (a series absent before counts as all zeros). */
export function deltaSeries(after: HistogramSeries, before: HistogramSeries | undefined): HistogramSeries {
  if (!before) return { buckets: after.buckets.map((b) => ({ ...b })), sum: after.sum, count: after.count };
  const prev = new Map(before.buckets.map((b) => [b.le, b.count]));
  return {
    buckets: after.buckets.map((b) => ({ le: b.le, count: b.count - (prev.get(b.le) ?? 0) })),
    sum: after.sum - before.sum,
    count: after.count - before.count,
  };
}

/** Sum of series (deltas of several load rounds); bucket bounds must match. */
export function addSeries(a: HistogramSeries | undefined, b: HistogramSeries): HistogramSeries {
  if (!a) return { buckets: b.buckets.map((x) => ({ ...x })), sum: b.sum, count: b.count };
  const other = new Map(b.buckets.map((x) => [x.le, x.count]));
  const les = new Set([...a.buckets.map((x) => x.le), ...b.buckets.map((x) => x.le)]);
  const mine = new Map(a.buckets.map((x) => [x.le, x.count]));
  return {
    buckets: [...les].sort((x, y) => x - y).map((le) => ({ le, count: (mine.get(le) ?? 0) + (other.get(le) ?? 0) })),
    sum: a.sum + b.sum,
    count: a.count + b.count,
  };
}

/** The delta of one histogram for one model between two snapshots (undefined when absent after). */
export function snapshotDelta(after: HistogramSnapshot, before: HistogramSnapshot, name: string, model: string): HistogramSeries | undefined {
  const a = after.get(name)?.get(model);
  if (!a) return undefined;
  return deltaSeries(a, before.get(name)?.get(model));
}

/**
 * Prometheus' histogram_quantile(q, ...) over cumulative buckets: NaN without observations (or
 * without a +Inf bucket); the rank's bucket is interpolated linearly from its lower bound (0 for the
 * first bucket); a rank in the +Inf bucket answers the highest finite upper bound.
 */
export function histogramQuantile(q: number, s: HistogramSeries): number {
  if (Number.isNaN(q)) return Number.NaN;
  if (q < 0) return Number.NEGATIVE_INFINITY;
  if (q > 1) return Number.POSITIVE_INFINITY;
  const buckets = s.buckets;
  if (buckets.length < 2 || buckets[buckets.length - 1]!.le !== Number.POSITIVE_INFINITY) return Number.NaN;
  // Cumulative counts must not decrease (they can, by float error, in subtractions); Prometheus fixes them up the same way.
  const counts: number[] = [];
  let max = 0;
  for (const b of buckets) counts.push((max = Math.max(max, b.count)));
  const total = counts[counts.length - 1]!;
  if (!(total > 0)) return Number.NaN;
  let rank = q * total;
  let b = buckets.length - 1;
  for (let i = 0; i < buckets.length - 1; i++) {
    if (counts[i]! >= rank) {
      b = i;
      break;
    }
  }
  if (b === buckets.length - 1) return buckets[buckets.length - 2]!.le;
  if (b === 0 && buckets[0]!.le <= 0) return buckets[0]!.le;
  let start = 0;
  const end = buckets[b]!.le;
  let count = counts[b]!;
  if (b > 0) {
    start = buckets[b - 1]!.le;
    count -= counts[b - 1]!;
    rank -= counts[b - 1]!;
  }
  return start + (end - start) * (rank / count);
}

/** The bucket [lower, upper] that holds quantile q: how precise histogramQuantile can be there. */
export function quantileBucket(q: number, s: HistogramSeries): { lower: number; upper: number } | null {
  const v = histogramQuantile(q, s);
  if (!Number.isFinite(v)) return null;
  let lower = 0;
  for (const b of s.buckets) {
    if (v <= b.le) return { lower, upper: b.le };
    lower = b.le;
  }
  return null;
}

export interface ServerLatency {
  count: number;
  /** Seconds. */
  mean: number;
  p50: number;
  p99: number;
}

/** count, mean, p50, p99 of a (delta) series; null without observations. */
export function summarizeSeries(s: HistogramSeries | undefined): ServerLatency | null {
  if (!s || !(s.count > 0)) return null;
  return { count: s.count, mean: s.sum / s.count, p50: histogramQuantile(0.5, s), p99: histogramQuantile(0.99, s) };
}
