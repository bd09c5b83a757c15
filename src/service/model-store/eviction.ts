/**
 * Which entries eviction may remove, and in what order: only entries no manifest variant
 * references, that the caller does not serve (`keep`), and that were not used or written within
 * the grace period (they may be about to enter the manifest: a replica that has just pruned
 * writes the entry, then the manifest). Damaged entries go first, then the least recently used.
 */
import type { EntrySummary } from './entry-summary.ts';
import type { HexDigest } from './store-key.ts';

export interface EvictionResult {
  evicted: EntrySummary[];
  bytesBefore: number;
  bytesAfter: number;
}

export const DEFAULT_EVICT_GRACE_MS = 10 * 60 * 1000;

export function evictionCandidates(entries: readonly EntrySummary[], graceMs: number, keep: ReadonlySet<HexDigest> | undefined, now: number): EntrySummary[] {
  return entries
    .filter((e) => e.referencedBy.length === 0 && !keep?.has(e.key) && now - Date.parse(e.lastUsedAt) >= graceMs)
    .sort((a, b) => Number(b.problem !== null) - Number(a.problem !== null) || Date.parse(a.lastUsedAt) - Date.parse(b.lastUsedAt));
}
