/**
 * The statistics every measurement reports, defined once: the engine's own timings, the load
 * generator's summaries and the benchmark scripts all use these.
 *
 * - `quantileSorted(sorted, q)`: linear interpolation between the two nearest ranks (numpy's
 *   default and k6's `p(N)`).
 * - `median(xs)`: the middle value of an odd-length sample, the mean of the two middle values of an
 *   even-length one.
 * - An empty sample has no median, quantile or mean: NaN.
 */

/** The q-quantile (q clamped to [0, 1]) of an ascending-sorted sample; NaN when it is empty. */
export function quantileSorted(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * Math.min(1, Math.max(0, q));
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (pos - lo);
}

/** A sorted copy, ascending by value (Array.prototype.sort alone compares numbers as strings). */
export function sortedAscending(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** The q-quantile (q clamped to [0, 1]) of an unsorted sample; NaN when it is empty. */
export function quantile(xs: readonly number[], q: number): number {
  return quantileSorted(sortedAscending(xs), q);
}

/** The median; for an even count the mean of the two middle values; NaN when the sample is empty. */
export function median(xs: readonly number[]): number {
  return quantile(xs, 0.5);
}

export function sum(xs: readonly number[]): number {
  let total = 0;
  for (const x of xs) total += x;
  return total;
}

/** The arithmetic mean; NaN when the sample is empty. */
export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? Number.NaN : sum(xs) / xs.length;
}
