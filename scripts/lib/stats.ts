/**
 * The statistics every script reports, defined once.
 *
 * - `quantile(xs, q)`: linear interpolation between the two nearest ranks (numpy's default and k6's
 *   `p(N)`); loadtest/stats.ts's `quantileSorted` is the one implementation, used here on a sorted copy.
 * - `median(xs)`: `quantile(xs, 0.5)`, the middle value of an odd-length sample and the mean of the two
 *   middle values of an even-length one.
 * - An empty sample has no median, quantile or mean: NaN (callers that print a table show it as such).
 */
import { quantileSorted } from '../../loadtest/stats.ts';

export { quantileSorted, summarize, type Summary } from '../../loadtest/stats.ts';

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
