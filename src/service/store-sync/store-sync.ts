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
  type ManifestSnapshot,
  type ManifestSplit,
  type ManifestWatch,
  ModelStore,
  stateOf,
  type StoredEntry,
} from '../model-store/index.ts';
import { EntryVerification } from './entry-verification.ts';
import { ManifestApplier } from './manifest-apply.ts';
import { EMPTY_STATE } from './manifest-changes.ts';
import { ManifestRecorder } from './manifest-recorder.ts';
import { SerialQueue } from './serial-queue.ts';
import type { StoreServing } from './store-serving.ts';
import { type StoreUsage, StoreUsageMeter } from './store-usage.ts';
import { digestInWorker, type StoredModel } from './stored-model-io.ts';

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

export class StoreSync {
  /** SHA-256 of the dense model's weights: the source of prunes of the dense model. */
  private denseDigest: HexDigest | undefined;
  /** Store key of every variant served from (or written to) the store. */
  private readonly keys = new Map<string, HexDigest>();
  private readonly verification = new EntryVerification();
  private readonly meter: StoreUsageMeter;
  /** Manifest work (writes, and applying other replicas' changes) runs one at a time. */
  private readonly queue = new SerialQueue();
  private readonly recorder: ManifestRecorder;
  private serving: StoreServing | undefined;
  private applier: ManifestApplier | undefined;
  private watch: ManifestWatch | undefined;
  private lastWatchError = '';

  private constructor(
    readonly store: ModelStore,
    private readonly options: StoreSyncOptions,
  ) {
    this.meter = new StoreUsageMeter(store);
    this.recorder = new ManifestRecorder({
      store,
      queue: this.queue,
      pollMs: options.pollMs,
      purgeEntry: (id, key) => this.purgeEntry(id, key),
      onWriteFailure: () => this.meter.countError('manifest_write'),
      log: options.log,
    });
  }

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
    const denseDigest = (this.denseDigest = await digestInWorker(dense.spec, dense.weights));
    this.options.log(`model store: ${this.root}; dense model digest ${denseDigest.slice(0, 12)}… (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    this.applier = new ManifestApplier({
      store: this.store,
      serving,
      keys: this.keys,
      denseDigest,
      verification: this.verification,
      onLoadFailure: () => this.meter.countError('load'),
      log: this.options.log,
    });
    const { manifest, baseline } = await this.readRecordedState(serving);
    const before = new Set(this.keys.keys());
    if (manifest) this.recorder.startFrom(manifest);
    if (manifest) await this.queue.run(() => this.applier!.apply(manifest, 'restore'));
    const restored = [...this.keys.keys()].filter((id) => !before.has(id));
    if (manifest) this.options.log(`model store: restored ${restored.length ? restored.map((id) => `'${id}'`).join(', ') : 'no variants'}; active '${serving.activeId()}'`);
    this.follow(baseline);
    await this.evict();
    await this.meter.refresh();
    this.options.log(`model store: following ${this.root} (manifest read every ${this.options.pollMs} ms)`);
    return { restored, manifest };
  }

  /** The manifest now and its digest; an unusable one is logged and read as none. */
  private async readRecordedState(serving: StoreServing): Promise<{ manifest: Manifest | null; baseline: string | undefined }> {
    try {
      const snapshot = await this.store.readManifest();
      return { manifest: snapshot.manifest, baseline: snapshot.digest };
    } catch (e) {
      this.lastWatchError = (e as Error).message;
      this.options.log(`model store: ${(e as Error).message}; serving '${serving.denseId}' without the recorded state`);
      return { manifest: null, baseline: undefined };
    }
  }

  /**
   * Watch the manifest for other replicas' writes: changes still pending here are rebased onto
   * each, the result applied, and written back when anything was pending.
   */
  private follow(baseline: string | undefined): void {
    const onChange = (snapshot: ManifestSnapshot) =>
      this.queue.run(async () => {
        if (!snapshot.manifest) return;
        await this.applier!.apply(this.recorder.rebase(snapshot.manifest), 'follow');
        await this.recorder.flush();
      });
    this.watch = this.store.watchManifest(this.options.pollMs, onChange, {
      ...(baseline !== undefined && { baseline }),
      onError: (e) => {
        const message = e instanceof Error ? e.message : String(e);
        if (message !== this.lastWatchError) this.options.log(`model store: ${message}`);
        this.lastWatchError = message;
      },
    });
  }

  /** Stop following the manifest (shutdown) and wait for manifest work in progress. */
  async stop(): Promise<void> {
    this.watch?.stop();
    await this.recorder.stop();
  }

  /**
   * While changes made here are not in the manifest (its write failed): a sentence for admin
   * answers saying so and what happens next; undefined when the manifest holds everything.
   */
  unrecorded(): string | undefined {
    return this.recorder.unrecorded();
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
    const problem = entry && this.verification.problemOf(key, entry.record.createdAt);
    if (problem !== undefined) {
      this.options.log(`model store: entry ${key} failed verification (${problem}); pruning again`);
      entry = undefined;
    }
    this.meter.countPrune(entry !== undefined);
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
      return await this.verification.load({ key, dir, record: checked.record });
    } catch (e) {
      this.meter.countError('load');
      throw e;
    }
  }

  /** A variant registered from (or written to) the store: record it in the manifest, activating it if asked. */
  async recordAdded(id: string, key: HexDigest, activate: boolean): Promise<void> {
    this.keys.set(id, key);
    this.verification.forget(key); // written anew by this prune, or verified by its load
    this.meter.invalidate();
    await this.recorder.record({ kind: 'add', id, key, activate });
    await this.evict();
  }

  recordActive(id: string): Promise<void> {
    return this.recorder.record({ kind: 'active', id });
  }

  recordSplit(split: ManifestSplit | undefined): Promise<void> {
    return this.recorder.record({ kind: 'split', split: split ? { variant: split.variant, share: split.share } : null });
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
    await this.recorder.record({ kind: 'remove', id });
    let purged = false;
    if (purge && key !== undefined) {
      if (this.recorder.removalPending(id)) {
        this.recorder.purgeWhenRecorded(id, key);
        this.options.log(`model store: entry ${key} of '${id}' is deleted once the manifest records that '${id}' was removed (its write failed)`);
      } else {
        purged = await this.purgeEntry(id, key);
      }
    }
    await this.evict();
    await this.meter.refresh();
    return purged;
  }

  /** Delete `id`'s entry `key` (its removal is in the manifest); false, logged, when the store refuses. */
  private async purgeEntry(id: string, key: HexDigest): Promise<boolean> {
    try {
      const removed = await this.store.remove(key);
      if (removed) this.options.log(`model store: deleted entry ${key} of '${id}'`);
      return removed;
    } catch (e) {
      this.meter.countError('purge');
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
    return this.queue.run(async () => {
      const { manifest } = await this.store.readManifest();
      const state = this.recorder.withPending(manifest ? stateOf(manifest) : EMPTY_STATE);
      const users = new Set(state.variants.filter((v) => v.key === key && v.id !== id).map((v) => v.id));
      for (const [other, k] of this.keys) if (k === key && other !== id) users.add(other);
      if (users.size > 0) throw new EntryReferencedError(key, [...users]);
    });
  }

  /** Every entry, for GET /admin/store; one whose contents failed verification here shows that as its problem. */
  async list(): Promise<EntrySummary[]> {
    return (await this.store.list()).map((e) => {
      const problem = e.problem === null ? this.verification.problemOf(e.key, e.createdAt) : undefined;
      return problem !== undefined ? { ...e, problem } : e;
    });
  }

  /** Size, entries and prune hits / misses; the directory is re-read at most once a second (a scrape reads this several times). */
  usage(): Promise<StoreUsage> {
    return this.meter.usage();
  }

  /** Keep the store under its limit; entries of variants served here are kept even if no manifest lists them. */
  private async evict(): Promise<void> {
    if (this.options.maxBytes === undefined) return;
    try {
      const r = await this.store.evict(this.options.maxBytes, { graceMs: this.options.evictGraceMs ?? 10 * 60 * 1000, keep: new Set(this.keys.values()) });
      for (const e of r.evicted) this.options.log(`model store: evicted entry ${e.key} (${e.bytes} bytes, last used ${e.lastUsedAt}) to stay under ${this.options.maxBytes} bytes`);
    } catch (e) {
      this.meter.countError('evict');
      this.options.log(`model store: eviction failed: ${(e as Error).message}`);
    }
  }
}
