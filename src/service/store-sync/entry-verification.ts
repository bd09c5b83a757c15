/**
 * Entries whose contents failed verification when loaded here (by key), with the entry.json
 * creation time they were checked against: shown as their `problem`, skipped when a manifest
 * lists them, and a prune of that key prunes again (its put rewrites the entry). A rewritten entry
 * (another createdAt) is judged afresh.
 */
import { EntryInvalidError, type HexDigest, type StoredEntry } from '../model-store/index.ts';
import { loadStoredModel, type StoredModel } from './stored-model-io.ts';

export class EntryVerification {
  private readonly damaged = new Map<HexDigest, { problem: string; createdAt: string }>();

  /** Verify and read an entry in the stored-model worker, remembering a verification failure. */
  async load(entry: StoredEntry): Promise<StoredModel> {
    try {
      const stored = await loadStoredModel(entry);
      this.damaged.delete(entry.key);
      return stored;
    } catch (e) {
      if (e instanceof EntryInvalidError) this.damaged.set(entry.key, { problem: e.reason, createdAt: entry.record.createdAt });
      throw e;
    }
  }

  /** Why this version (creation time) of entry `key` failed verification here; undefined if it did not. */
  problemOf(key: HexDigest, createdAt: string | null): string | undefined {
    const damage = this.damaged.get(key);
    return damage && damage.createdAt === createdAt ? damage.problem : undefined;
  }

  /** The entry was written anew (or verified by its load): nothing is known against it. */
  forget(key: HexDigest): void {
    this.damaged.delete(key);
  }
}
