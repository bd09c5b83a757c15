/**
 * Making this server serve what a manifest says: load the listed variants it lacks (without
 * pruning), apply the active variant and the split, and (when following another replica) unload
 * stored variants no longer listed. Entries that are missing, damaged or pruned from another model
 * are logged and skipped; a listed id already served here is never added a second time.
 */
import { EntryInvalidError, type HexDigest, type ManifestState, type ModelStore, type StoredEntry } from '../model-store/index.ts';
import type { EntryVerification } from './entry-verification.ts';
import type { StoreServing } from './store-serving.ts';

export interface ManifestApplyOptions {
  store: ModelStore;
  serving: StoreServing;
  /** Store key of every variant served from the store here: loads add to it, unloads remove from it. */
  keys: Map<string, HexDigest>;
  /** The dense model's digest: entries pruned from it (or from a variant served here) are servable. */
  denseDigest: HexDigest;
  verification: EntryVerification;
  /** Counts a manifest variant that could not be loaded. */
  onLoadFailure(): void;
  log: (line: string) => void;
}

export type ApplyReason = 'restore' | 'follow';

export class ManifestApplier {
  /** Id conflicts with the manifest already logged (id, manifest key, key here): each is logged once. */
  private readonly reportedConflicts = new Set<string>();

  constructor(private readonly o: ManifestApplyOptions) {}

  async apply(m: ManifestState, why: ApplyReason): Promise<void> {
    const sources = new Set<string>([this.o.denseDigest, ...this.o.keys.values()]);
    for (const v of m.variants) {
      if (this.servedHere(v.id, v.key)) continue;
      await this.load(v.id, v.key, sources, why);
    }
    this.applyChoices(m);
    if (why === 'follow') await this.unloadUnlisted(m);
  }

  /** Load manifest variant `id` from entry `key` when it is there, sound and pruned from a model served here. */
  private async load(id: string, key: HexDigest, sources: Set<string>, why: ApplyReason): Promise<void> {
    const skip = (reason: string) => {
      this.o.onLoadFailure();
      this.o.log(`model store: skipping variant '${id}': ${reason}`);
    };
    let entry: StoredEntry | undefined;
    try {
      entry = await this.o.store.get(key);
    } catch (e) {
      return skip((e as Error).message);
    }
    if (!entry) return skip(`its entry ${key} is not in ${this.o.store.root}`);
    if (!sources.has(entry.record.sourceDigest)) return skip(`entry ${key} was pruned from another model (source ${entry.record.sourceDigest.slice(0, 12)}…)`);
    // Failed verification already (logged then): not hashed again until the entry is rewritten.
    if (this.o.verification.problemOf(key, entry.record.createdAt) !== undefined) return;
    try {
      const t0 = performance.now();
      const stored = await this.o.verification.load(entry);
      // The id may have been taken while the entry loaded (a prune here with an explicit id):
      // adding it now would start an engine that cannot be registered.
      if (this.servedHere(id, key)) return;
      await this.o.serving.addStored(id, stored);
      this.o.keys.set(id, key);
      sources.add(key);
      this.o.log(`model store: loaded variant '${id}' from ${entry.dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${why})`);
    } catch (e) {
      // The id was registered here while this one started (the service refuses a second one).
      if (this.servedHere(id, key)) return;
      // Damaged contents: skipped, not deleted (the operator decides; a prune of it rewrites it).
      skip(e instanceof EntryInvalidError ? e.message : `loading ${entry.dir} failed: ${(e as Error).message}`);
    }
  }

  /** The manifest's active variant and split, where this server can serve them. */
  private applyChoices(m: ManifestState): void {
    const { serving, log } = this.o;
    if (m.active !== null && m.active !== serving.activeId()) {
      if (serving.isServing(m.active)) serving.applyActive(m.active);
      else log(`model store: the manifest's active variant '${m.active}' is not servable here; keeping '${serving.activeId()}'`);
    }
    const wanted = m.split && serving.has(m.split.variant) ? { variant: m.split.variant, share: m.split.share } : undefined;
    if (m.split && !wanted) log(`model store: the manifest's split goes to '${m.split.variant}', which is not served here; no split`);
    const current = serving.split();
    if (current?.variant !== wanted?.variant || current?.share !== wanted?.share) serving.applySplit(wanted);
  }

  /** Stored variants another replica dropped from the manifest; the active one is kept. */
  private async unloadUnlisted(m: ManifestState): Promise<void> {
    const { serving, keys } = this.o;
    for (const id of [...keys.keys()]) {
      if (m.variants.some((v) => v.id === id) || !serving.has(id)) continue;
      if (id === serving.activeId()) {
        this.o.log(`model store: '${id}' left the manifest but is active here; keeping it`);
        continue;
      }
      await serving.unloadLocal(id);
      keys.delete(id);
    }
  }

  /**
   * Whether manifest variant `id` (entry `key`) is already served here: same entry, nothing to do;
   * another variant under that id (another entry, or one not from the store), the one here is kept
   * and the conflict logged once.
   */
  private servedHere(id: string, key: HexDigest): boolean {
    if (!this.o.serving.has(id)) return false;
    const here = this.o.keys.get(id);
    const conflict = `${id}\0${key}\0${here}`;
    if (here !== key && !this.reportedConflicts.has(conflict)) {
      this.reportedConflicts.add(conflict);
      this.o.log(
        `model store: manifest variant '${id}' (entry ${key}) has the id of a variant served here (${here === undefined ? 'no store entry recorded for it' : `entry ${here}`}); keeping the one served here (unload it, or prune under another id, to load the manifest's)`,
      );
    }
    return true;
  }
}
