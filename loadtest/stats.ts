/** Summary statistics of a sample, as the load report and the k6 summary show them. */
import { quantileSorted } from '../src/runtime/stats/sample-stats.ts';

export { quantileSorted };

export interface Summary {
  count: number;
  mean: number;
  min: number;
  max: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
}

/** count/mean/min/max/p50/p90/p95/p99, or null for an empty sample. */
export function summarize(values: readonly number[]): Summary | null {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const arr = Array.from(sorted);
  let sum = 0;
  for (const v of arr) sum += v;
  return {
    count: arr.length,
    mean: sum / arr.length,
    min: arr[0] as number,
    max: arr[arr.length - 1] as number,
    p50: quantileSorted(arr, 0.5),
    p90: quantileSorted(arr, 0.9),
    p95: quantileSorted(arr, 0.95),
    p99: quantileSorted(arr, 0.99),
  };
}
