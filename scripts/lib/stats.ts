/**
 * The statistics every script reports: the one implementation in src/runtime/stats/sample-stats.ts
 * (quantiles interpolated between nearest ranks; an even-length median is the mean of the two middle
 * values), plus the load generator's summaries.
 */
export { mean, median, quantile, quantileSorted, sortedAscending, sum } from '../../src/runtime/stats/sample-stats.ts';
export { summarize, type Summary } from '../../loadtest/stats.ts';
