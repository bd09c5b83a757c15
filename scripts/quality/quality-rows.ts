/** What bench:quality measures per run, and what its report sections read (scripts/bench-quality.ts). */
import type { Strategy } from '../../src/mop/report.ts';
import type { PruneRecipe } from '../../src/service/prune/prune-options.ts';

export interface Row {
  variant: string;
  strategy: Strategy;
  target: number;
  ratio: number;
  perplexity: number;
  kl: number;
  calibrationScore: number;
  path: string;
  layers: string;
  wallMs: number;
  /** Recovery recipe overrides of this row (absent: no recovery). */
  recovery?: Partial<PruneRecipe>;
  /** Wall time spent in recovery (candidates + final). */
  recoverySeconds?: number;
  /** Held-out perplexity of the same model before its final recovery (with recovery rows). */
  perplexityBeforeFinal?: number;
}

/** The measured rows and the run's settings, as the report sections see them. */
export interface QualityContext {
  rows: Row[];
  targets: number[];
  sweepTarget: number;
  seed: number;
  dense: { perplexity: number };
  /** The shared prune table's defaults (the recovery recipe every recovered row starts from). */
  tableDefaults: Omit<PruneRecipe, 'target'>;
  /** Recovered runs this command plans. */
  plannedRecovered: number;
  get(variant: string, strategy: Strategy, target: number): Row | undefined;
}

export const f = (x: number, d = 2): string => x.toFixed(d);
export const pct = (x: number): string => `${(100 * x).toFixed(0)}%`;
