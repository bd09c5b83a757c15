/**
 * The server's side of the model store (`--model-store`): it restores the recorded serving state
 * at start-up, records every admin change in the manifest, follows changes other replicas make,
 * finds prune results already in the store, and keeps the store under its size limit. The serving
 * side is reached through `StoreServing` (the model service implements it), so this module does
 * not depend on the service that uses it.
 */
import { basename } from 'node:path';
import type { ModelSpec } from '../../runtime/model/spec.ts';
import type { Weights } from '../../runtime/model/tensor.ts';
import {
  EntryInvalidError,
  EntryReferencedError,
  type EntrySummary,
  type HexDigest,
  type Manifest,
  type ManifestSplit,
  type ManifestState,
  type ManifestWatch,
  ModelStore,
  type StoredEntry,
} from '../model-store/index.ts';
import { applyLocalChange, describeLocalChange, EMPTY_STATE, type LocalChange, rebasePending } from './manifest-changes.ts';
import { digestInWorker, loadStoredModel, type StoredModel } from './stored-model-io.ts';

/** What the store needs from the serving side; none of these write the manifest. */
export interface StoreServing {
  readonly denseId: string;
  has(id: string): boolean;
  /** The id requests without a model get, and whether `id` can serve now. */
  activeId(): string | undefined;
  isServing(id: string): boolean;
  split(): ManifestSplit | undefined;
  /** Start a stored checkpoint in an engine worker and register it under `id`. */
  addStored(id: string, stored: StoredModel): Promise<void>;
  applyActive(id: string): void;
  applySplit(split: ManifestSplit | undefined): void;
  unloadLocal(id: string): Promise<void>;
}

export interface StoreSyncOptions {
  root: string;
  /** Evict least recently used unreferenced entries above this many bytes; undefined = no limit. */
  maxBytes: number | undefined;
  /** How often the manifest is polled for other replicas' changes. */
  pollMs: number;
  /** Entries used within this long are never evicted (default 10 min: a replica may be about to reference it). */
  evictGraceMs?: number;
  /** The store at `root`, already open (default: opened here). Tests pass one whose writes fail. */
  store?: ModelStore;
  log: (line: string) => void;
}

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

export class StoreSync {
  /** SHA-256 of the dense model's weights: the source of prunes of the dense model. */
  private denseDigest: HexDigest | undefined;
  /** Store key of every variant served from (or written to) the store. */
  private readonly keys = new Map<string, HexDigest>();
  /**
   * Entries whose contents failed verification at load (by key), with the entry.json creation
   * time they were checked against: shown as their `problem`, and a prune of that key prunes again
   * (its put rewrites the entry). A rewritten entry (another createdAt) is judged afresh.
   */
  private readonly damaged = new Map<HexDigest, { problem: string; createdAt: string }>();
  private serving: StoreServing | undefined;
  private watch: ManifestWatch | undefined;
  /** Manifest work (writes, and applying other replicas' changes) runs one at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  private lastWatchError = '';
  /** Id conflicts with the manifest already logged (id, manifest key, key here): each is logged once. */
  private readonly reportedConflicts = new Set<string>();
  private usageCache = { bytes: 0, entries: 0 };
  private usageReadAt = -Infinity;
  private usageRead: Promise<void> = Promise.resolve();
  private counts = { hits: 0, misses: 0 };
  private readonly errors: Record<StoreErrorOp, number> = { manifest_write: 0, load: 0, evict: 0, purge: 0 };
  /** Changes made here that the manifest does not hold yet (a write failed): replayed until one succeeds. */
  private pending: LocalChange[] = [];
  /** The manifest state the pending changes were made on: what this replica last read, applied or wrote. */
  private base: ManifestState = EMPTY_STATE;
  /** Entries to delete (variant id → key) once the manifest records their variant's removal (a purge whose write failed). */
  private readonly deferredPurges = new Map<string, HexDigest>();
  /** Why the last manifest write failed, while changes are pending. */
  private writeFailure: string | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  private constructor(
    readonly store: ModelStore,
    private readonly options: StoreSyncOptions,
  ) {}

  /** Open (create) the store and clean what crashed writers left; a path that cannot be a store throws. */
  static async open(options: StoreSyncOptions): Promise<StoreSync> {
    const store = options.store ?? (await ModelStore.open(options.root, { cleanOnOpen: false }));
    const cleaned = await store.cleanup();
    for (const f of cleaned.failed) options.log(`model store: could not remove leftover ${f.path}: ${f.error}`);
    return new StoreSync(store, options);
  }

  get root(): string {
    return this.store.root;
  }

  /**
   * Digest the dense model (off the main thread), load the variants the manifest records, apply its
   * active variant and split, then follow the manifest. A manifest this release cannot use is
   * logged and left alone: the dense model serves.
   */
  async start(serving: StoreServing, dense: { spec: ModelSpec; weights: Weights }): Promise<{ restored: string[]; manifest: Manifest | null }> {
    this.serving = serving;
    const t0 = performance.now();
    this.denseDigest = await digestInWorker(dense.spec, dense.weights);
    this.options.log(`model store: ${this.root}; dense model digest ${this.denseDigest.slice(0, 12)}… (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    let manifest: Manifest | null = null;
    let baseline: string | undefined;
    try {
      const snapshot = await this.store.readManifest();
      manifest = snapshot.manifest;
      baseline = snapshot.digest;
    } catch (e) {
      this.lastWatchError = (e as Error).message;
      this.options.log(`model store: ${(e as Error).message}; serving '${serving.denseId}' without the recorded state`);
    }
    const before = new Set(this.keys.keys());
    if (manifest) this.base = stateOf(manifest);
    if (manifest) await this.serialized(() => this.apply(manifest, 'restore'));
    const restored = [...this.keys.keys()].filter((id) => !before.has(id));
    if (manifest) this.options.log(`model store: restored ${restored.length ? restored.map((id) => `'${id}'`).join(', ') : 'no variants'}; active '${serving.activeId()}'`);
    this.watch = this.store.watchManifest(this.options.pollMs, (s) => this.serialized(() => (s.manifest ? this.follow(s.manifest) : undefined)), {
      ...(baseline !== undefined && { baseline }),
      onError: (e) => {
        const message = e instanceof Error ? e.message : String(e);
        if (message !== this.lastWatchError) this.options.log(`model store: ${message}`);
        this.lastWatchError = message;
      },
    });
    await this.evict();
    await this.refreshUsage();
    this.options.log(`model store: following ${this.root} (manifest read every ${this.options.pollMs} ms)`);
    return { restored, manifest };
  }

  /** Stop following the manifest (shutdown) and wait for manifest work in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watch?.stop();
    clearTimeout(this.retryTimer);
    await this.queue.catch(() => undefined);
    if (this.pending.length > 0) {
      this.options.log(`model store: stopping with changes the manifest never recorded (${this.pending.map(describeLocalChange).join(', ')}): ${this.writeFailure}`);
    }
  }

  /**
   * While changes made here are not in the manifest (its write failed): a sentence for admin
   * answers saying so and what happens next; undefined when the manifest holds everything.
   */
  unrecorded(): string | undefined {
    if (this.pending.length === 0) return undefined;
    return (
      `the model-store manifest could not be written (${this.writeFailure}), so ${this.pending.map(describeLocalChange).join(', ')} ` +
      `applies on this replica only: other replicas do not see it and a restart would not restore it. It is retried every ${this.options.pollMs} ms ` +
      `(the log says when it is recorded; mop_model_store_errors_total{op="manifest_write"} counts the failures)`
    );
  }

  /** What a prune of variant `id` starts from: the dense model's digest, or a stored variant's key; undefined when unknown. */
  sourceDigest(id: string): HexDigest | undefined {
    return id === this.serving?.denseId ? this.denseDigest : this.keys.get(id);
  }

  keyOf(id: string): HexDigest | undefined {
    return this.keys.get(id);
  }

  /** The served variant already holding entry `key`, if any. */
  variantWithKey(key: HexDigest): string | undefined {
    for (const [id, k] of this.keys) if (k === key && this.serving?.has(id)) return id;
    return undefined;
  }

  /** A sound entry for `key` (a prune cache hit), or undefined (a miss; a damaged entry is logged and rewritten by the prune). */
  async find(key: HexDigest): Promise<StoredEntry | undefined> {
    let entry: StoredEntry | undefined;
    try {
      entry = await this.store.get(key);
    } catch (e) {
      if (!(e instanceof EntryInvalidError)) throw e;
      this.options.log(`model store: ${e.message}; pruning again`);
    }
    const damage = entry && this.damaged.get(key);
    if (damage && damage.createdAt === entry!.record.createdAt) {
      this.options.log(`model store: entry ${key} failed verification (${damage.problem}); pruning again`);
      entry = undefined;
    }
    if (entry) this.counts.hits++;
    else this.counts.misses++;
    return entry;
  }

  /**
   * Read a stored checkpoint (a prune cache hit at `dir`, an entry directory) off the main thread,
   * its files verified against entry.json first; EntryInvalidError when they do not match.
   */
  async load(dir: string): Promise<StoredModel> {
    try {
      const key = basename(dir);
      const checked = await this.store.verify(key);
      if (!checked.ok) throw new EntryInvalidError(key, checked.file, checked.reason);
      return await this.loadEntry({ key, dir, record: checked.record });
    } catch (e) {
      this.errors.load++;
      throw e;
    }
  }

  /** Verify and read an entry in the stored-model worker, remembering a verification failure. */
  private async loadEntry(entry: StoredEntry): Promise<StoredModel> {
    try {
      const stored = await loadStoredModel(entry);
      this.damaged.delete(entry.key);
      return stored;
    } catch (e) {
      if (e instanceof EntryInvalidError) this.damaged.set(entry.key, { problem: e.reason, createdAt: entry.record.createdAt });
      throw e;
    }
  }

  /** A variant registered from (or written to) the store: record it in the manifest, activating it if asked. */
  async recordAdded(id: string, key: HexDigest, activate: boolean): Promise<void> {
    this.keys.set(id, key);
    this.damaged.delete(key); // written anew by this prune, or verified by its load
    this.usageReadAt = -Infinity; // a new entry: re-read the sizes at the next scrape
    await this.record({ kind: 'add', id, key, activate });
    await this.evict();
  }

  recordActive(id: string): Promise<void> {
    return this.record({ kind: 'active', id });
  }

  recordSplit(split: ManifestSplit | undefined): Promise<void> {
    return this.record({ kind: 'split', split: split ? { variant: split.variant, share: split.share } : null });
  }

  /**
   * A variant unloaded here: drop it from the manifest, and with `purge` delete its entry too (true
   * when one was deleted). While the manifest still lists the variant (its write failed: other
   * replicas may load the entry) the deletion waits until the removal is recorded; an entry the
   * store refuses to delete (another replica uses it since the check) is kept. The log says which.
   */
  async recordRemoved(id: string, purge: boolean): Promise<boolean> {
    const key = this.keys.get(id);
    this.keys.delete(id);
    await this.record({ kind: 'remove', id });
    let purged = false;
    if (purge && key !== undefined) {
      if (this.pending.some((c) => c.kind === 'remove' && c.id === id)) {
        this.deferredPurges.set(id, key);
        this.options.log(`model store: entry ${key} of '${id}' is deleted once the manifest records that '${id}' was removed (its write failed)`);
      } else {
        purged = await this.purgeEntry(id, key);
      }
    }
    await this.evict();
    await this.refreshUsage();
    return purged;
  }

  /** Delete `id`'s entry `key` (its removal is in the manifest); false, logged, when the store refuses. */
  private async purgeEntry(id: string, key: HexDigest): Promise<boolean> {
    try {
      const removed = await this.store.remove(key);
      if (removed) this.options.log(`model store: deleted entry ${key} of '${id}'`);
      return removed;
    } catch (e) {
      this.errors.purge++;
      this.options.log(`model store: kept entry ${key} of '${id}': ${(e as Error).message}`);
      return false;
    }
  }

  /**
   * Refuse a purge of `id`'s entry before anything is unloaded: EntryReferencedError when another
   * variant uses the entry (in the manifest, pending here, or served here), ManifestVersionError /
   * ManifestCorruptError when the manifest cannot say. Serialized with manifest work, so it sees
   * every change applied so far; a replica that references the entry after this check still
   * keeps it (recordRemoved then keeps the entry and logs why).
   */
  checkPurge(id: string): Promise<void> {
    const key = this.keys.get(id);
    if (key === undefined) return Promise.resolve();
    return this.serialized(async () => {
      const { manifest } = await this.store.readManifest();
      const state = this.pending.reduce(applyLocalChange, manifest ? stateOf(manifest) : EMPTY_STATE);
      const users = new Set(state.variants.filter((v) => v.key === key && v.id !== id).map((v) => v.id));
      for (const [other, k] of this.keys) if (k === key && other !== id) users.add(other);
      if (users.size > 0) throw new EntryReferencedError(key, [...users]);
    });
  }

  /** Every entry, for GET /admin/store; one whose contents failed verification here shows that as its problem. */
  async list(): Promise<EntrySummary[]> {
    return (await this.store.list()).map((e) => {
      const damage = this.damaged.get(e.key);
      return e.problem === null && damage && damage.createdAt === e.createdAt ? { ...e, problem: damage.problem } : e;
    });
  }

  /** Size, entries and prune hits / misses; the directory is re-read at most once a second (a scrape reads this several times). */
  async usage(): Promise<StoreUsage> {
    if (performance.now() - this.usageReadAt > 1000) this.usageRead = this.refreshUsage();
    await this.usageRead; // concurrent callers (one scrape's collectors) share one read
    return { ...this.usageCache, ...this.counts, errors: { ...this.errors } };
  }

  private async refreshUsage(): Promise<void> {
    this.usageReadAt = performance.now();
    try {
      const entries = await this.store.list();
      this.usageCache = { bytes: entries.reduce((n, e) => n + e.bytes, 0), entries: entries.length };
    } catch {
      // An unusable manifest makes list() throw; the last figures stand (the error is logged elsewhere).
    }
  }

  /** Keep the store under its limit; entries of variants served here are kept even if no manifest lists them. */
  private async evict(): Promise<void> {
    if (this.options.maxBytes === undefined) return;
    try {
      const r = await this.store.evict(this.options.maxBytes, { graceMs: this.options.evictGraceMs ?? 10 * 60 * 1000, keep: new Set(this.keys.values()) });
      for (const e of r.evicted) this.options.log(`model store: evicted entry ${e.key} (${e.bytes} bytes, last used ${e.lastUsedAt}) to stay under ${this.options.maxBytes} bytes`);
    } catch (e) {
      this.errors.evict++;
      this.options.log(`model store: eviction failed: ${(e as Error).message}`);
    }
  }

  /**
   * Record a change made here in the manifest. Serving has already changed, so a failed write is not
   * undone: the change stays pending (one log line) and is written with the next manifest work, a
   * retry every poll interval, or when another replica's manifest is merged.
   */
  private record(change: LocalChange): Promise<void> {
    return this.serialized(async () => {
      this.pending.push(change);
      const failure = await this.flush();
      if (failure !== undefined) {
        this.options.log(
          `model store: could not record '${describeLocalChange(change)}' in the manifest: ${failure}; it applies on this replica only until a retry (every ${this.options.pollMs} ms) records it`,
        );
      }
    });
  }

  /** Write the pending changes onto the current manifest (inside `serialized`); the failure's message, or undefined. */
  private async flush(): Promise<string | undefined> {
    if (this.pending.length === 0) return undefined;
    const changes = this.pending;
    try {
      const written = await this.store.updateManifest((current) => changes.reduce(applyLocalChange, current ?? EMPTY_STATE));
      this.pending = [];
      this.base = stateOf(written);
      if (this.writeFailure !== undefined) this.options.log(`model store: the manifest is written again; recorded ${changes.map(describeLocalChange).join(', ')}`);
      this.writeFailure = undefined;
      // Purges that waited for their removal to be recorded.
      for (const c of changes) {
        if (c.kind !== 'remove') continue;
        const key = this.deferredPurges.get(c.id);
        if (key === undefined) continue;
        this.deferredPurges.delete(c.id);
        await this.purgeEntry(c.id, key);
      }
      return undefined;
    } catch (e) {
      this.errors.manifest_write++;
      this.writeFailure = e instanceof Error ? e.message : String(e);
      this.scheduleRetry();
      return this.writeFailure;
    }
  }

  /** Try the pending changes again after one poll interval; their entries are marked used meanwhile (no replica evicts them). */
  private scheduleRetry(): void {
    if (this.retryTimer !== undefined || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.serialized(async () => {
        for (const c of this.pending) if (c.kind === 'add') await this.store.markUsed(c.key);
        await this.flush();
      });
    }, this.options.pollMs);
    this.retryTimer.unref();
  }

  /**
   * Another replica wrote the manifest: changes still pending here are rebased onto it (its later
   * choice of active variant or split wins; variants added or removed here stay so), the result is
   * applied, and written back when anything was pending.
   */
  private async follow(manifest: Manifest): Promise<void> {
    const next = stateOf(manifest);
    this.pending = rebasePending(this.pending, this.base, next);
    this.base = next;
    await this.apply(this.pending.reduce(applyLocalChange, next), 'follow');
    await this.flush();
  }

  private serialized<T>(work: () => Promise<T> | T): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Whether manifest variant `id` (entry `key`) is already served here: same entry, nothing to do;
   * another variant under that id (another entry, or one not from the store), the one here is kept
   * and the conflict logged once.
   */
  private servedHere(id: string, key: HexDigest): boolean {
    if (!this.serving!.has(id)) return false;
    const here = this.keys.get(id);
    const conflict = `${id}\0${key}\0${here}`;
    if (here !== key && !this.reportedConflicts.has(conflict)) {
      this.reportedConflicts.add(conflict);
      this.options.log(
        `model store: manifest variant '${id}' (entry ${key}) has the id of a variant served here (${here === undefined ? 'no store entry recorded for it' : `entry ${here}`}); keeping the one served here (unload it, or prune under another id, to load the manifest's)`,
      );
    }
    return true;
  }

  /**
   * Make this server serve what the manifest says: load the listed variants it lacks (without
   * pruning), apply the active variant and the split, and (when following) unload stored variants
   * no longer listed. Entries that are missing, damaged or pruned from another model are logged
   * and skipped.
   */
  private async apply(m: ManifestState, why: 'restore' | 'follow'): Promise<void> {
    const serving = this.serving!;
    const log = this.options.log;
    const sources = new Set<string>([this.denseDigest!, ...this.keys.values()]);
    for (const v of m.variants) {
      if (this.servedHere(v.id, v.key)) continue;
      const skip = (reason: string) => {
        this.errors.load++;
        log(`model store: skipping variant '${v.id}': ${reason}`);
      };
      let entry: StoredEntry | undefined;
      try {
        entry = await this.store.get(v.key);
      } catch (e) {
        skip((e as Error).message);
        continue;
      }
      if (!entry) {
        skip(`its entry ${v.key} is not in ${this.root}`);
        continue;
      }
      if (!sources.has(entry.record.sourceDigest)) {
        skip(`entry ${v.key} was pruned from another model (source ${entry.record.sourceDigest.slice(0, 12)}…)`);
        continue;
      }
      // Failed verification already (logged then): not hashed again until the entry is rewritten.
      if (this.damaged.get(v.key)?.createdAt === entry.record.createdAt) continue;
      try {
        const t0 = performance.now();
        const stored = await this.loadEntry(entry);
        // The id may have been taken while the entry loaded (a prune here with an explicit id):
        // adding it now would start an engine that cannot be registered.
        if (this.servedHere(v.id, v.key)) continue;
        await serving.addStored(v.id, stored);
        this.keys.set(v.id, v.key);
        sources.add(v.key);
        log(`model store: loaded variant '${v.id}' from ${entry.dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${why})`);
      } catch (e) {
        // The id was registered here while this one started (the service refuses a second one).
        if (this.servedHere(v.id, v.key)) continue;
        // Damaged contents: skipped, not deleted (the operator decides; a prune of it rewrites it).
        skip(e instanceof EntryInvalidError ? e.message : `loading ${entry.dir} failed: ${(e as Error).message}`);
      }
    }
    if (m.active !== null && m.active !== serving.activeId()) {
      if (serving.isServing(m.active)) serving.applyActive(m.active);
      else log(`model store: the manifest's active variant '${m.active}' is not servable here; keeping '${serving.activeId()}'`);
    }
    const wanted = m.split && serving.has(m.split.variant) ? { variant: m.split.variant, share: m.split.share } : undefined;
    if (m.split && !wanted) log(`model store: the manifest's split goes to '${m.split.variant}', which is not served here; no split`);
    const current = serving.split();
    if (current?.variant !== wanted?.variant || current?.share !== wanted?.share) serving.applySplit(wanted);
    if (why === 'follow') {
      for (const id of [...this.keys.keys()]) {
        if (m.variants.some((v) => v.id === id) || !serving.has(id)) continue;
        if (id === serving.activeId()) {
          log(`model store: '${id}' left the manifest but is active here; keeping it`);
          continue;
        }
        await serving.unloadLocal(id);
        this.keys.delete(id);
      }
    }
  }
}

function stateOf(m: ManifestState): ManifestState {
  return { variants: m.variants, active: m.active, split: m.split };
}
