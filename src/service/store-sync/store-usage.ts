/**
 * The model store's figures for the metrics: its size and entry count (read from the directory at
 * most once a second, since one scrape reads them several times), prunes answered from the store or
 * not, and failures by operation.
 */
import type { ModelStore } from '../model-store/index.ts';

/**
 * What failed, for `mop_model_store_errors_total{op}`: a manifest write (the change stays pending
 * and is retried), loading a stored variant (missing, damaged, from another model), eviction, and
 * deleting an entry on a purge.
 */
export type StoreErrorOp = 'manifest_write' | 'load' | 'evict' | 'purge';

/** Counts for the metrics: prunes answered from the store, prunes that had to run, and failures by operation. */
export interface StoreUsage {
  bytes: number;
  entries: number;
  hits: number;
  misses: number;
  errors: Record<StoreErrorOp, number>;
}

export class StoreUsageMeter {
  private sizes = { bytes: 0, entries: 0 };
  private readAt = -Infinity;
  private reading: Promise<void> = Promise.resolve();
  private readonly prunes = { hits: 0, misses: 0 };
  private readonly errors: Record<StoreErrorOp, number> = { manifest_write: 0, load: 0, evict: 0, purge: 0 };

  constructor(private readonly store: ModelStore) {}

  countPrune(hit: boolean): void {
    if (hit) this.prunes.hits++;
    else this.prunes.misses++;
  }

  countError(op: StoreErrorOp): void {
    this.errors[op]++;
  }

  /** A new entry: the sizes are read again at the next scrape. */
  invalidate(): void {
    this.readAt = -Infinity;
  }

  async usage(): Promise<StoreUsage> {
    if (performance.now() - this.readAt > 1000) this.reading = this.refresh();
    await this.reading; // concurrent callers (one scrape's collectors) share one read
    return { ...this.sizes, ...this.prunes, errors: { ...this.errors } };
  }

  async refresh(): Promise<void> {
    this.readAt = performance.now();
    try {
      const entries = await this.store.list();
      this.sizes = { bytes: entries.reduce((n, e) => n + e.bytes, 0), entries: entries.length };
    } catch {
      // An unusable manifest makes list() throw; the last figures stand (the error is logged elsewhere).
    }
  }
}
