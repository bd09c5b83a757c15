/**
 * The model store: content-addressed pruned checkpoints plus the manifest that says what to serve,
 * in one directory that several replicas may share. Entries appear only by an atomic rename of a
 * complete, fsynced directory, so a crash never leaves half an entry visible; the manifest is
 * replaced the same way and the last writer wins. See README.md for the layout and the promises.
 */
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fsyncDirectory, pathExists } from './durable-fs.ts';
import { type EntryOrigin, type EntryWriter, writeEntryInScratch } from './entry-writer.ts';
import { checkEntryDirectory, type EntryRecord, isEntryProblem, LAST_USED_FILE } from './entry-record.ts';
import { type EntrySummary, summarizeEntry } from './entry-summary.ts';
import { describeFsError, EntryInvalidError, EntryReferencedError, errorCode, ManifestCorruptError, StoreInputError, StoreWriteError } from './errors.ts';
import { DEFAULT_EVICT_GRACE_MS, evictionCandidates, type EvictionResult } from './eviction.ts';
import { type Manifest, type ManifestSnapshot, type ManifestState, readManifestFile, stateOf } from './manifest.ts';
import type { ManifestWatch } from './manifest-watch.ts';
import { OwnManifestWrites, type WatchOptions } from './own-manifest-writes.ts';
import { type CleanupResult, cleanScratch } from './scratch-cleanup.ts';
import { markScratchInUse, releaseScratch, scratchName } from './scratch-names.ts';
import { isHexDigest, type HexDigest, storeKey } from './store-key.ts';
import { type StoreLayout, storeLayout } from './store-layout.ts';

export interface ModelStoreOptions {
  /** Scratch in tmp/ older than this is removed on open whoever wrote it (default 6 h). */
  staleScratchMs?: number;
  /** Recorded as `writer` in manifests and entries (default `<hostname>:<pid>`). */
  writerName?: string;
  /**
   * Clean abandoned scratch on open (default true). A second handle inside a process that already
   * opened the store (a worker thread) passes false: scratch in-use marks are per thread, so its
   * cleanup could take the other thread's scratch for abandoned.
   */
  cleanOnOpen?: boolean;
}

/** An entry ready to load from `dir`. */
export interface StoredEntry {
  key: HexDigest;
  dir: string;
  record: EntryRecord;
}

/** `written`: this call published the entry; `hit`: it was already there (or another writer won the race). */
export interface PutResult extends StoredEntry {
  outcome: 'written' | 'hit';
}

export type VerifyResult = { ok: true; record: EntryRecord } | { ok: false; file: string; reason: string };

/** Monotonic counts since open, for a metrics layer. */
export interface StoreCounters {
  /** get() found a sound entry, or put() found the entry already there. */
  hits: number;
  /** get() found no entry. */
  misses: number;
  /** put() published a new entry. */
  written: number;
  /** put() failed (nothing was published). */
  failedPuts: number;
  /** get() found an entry damaged. */
  invalid: number;
  /** Entries removed by remove() or evict(). */
  removed: number;
}

const DEFAULT_STALE_SCRATCH_MS = 6 * 60 * 60 * 1000;

export class ModelStore {
  readonly root: string;
  readonly writerName: string;
  private readonly layout: StoreLayout;
  private readonly staleScratchMs: number;
  private readonly count: StoreCounters = { hits: 0, misses: 0, written: 0, failedPuts: 0, invalid: 0, removed: 0 };
  private readonly ownWrites: OwnManifestWrites;

  private constructor(root: string, options: ModelStoreOptions) {
    this.root = root;
    this.layout = storeLayout(root);
    this.staleScratchMs = options.staleScratchMs ?? DEFAULT_STALE_SCRATCH_MS;
    this.writerName = options.writerName ?? `${hostname()}:${process.pid}`;
    this.ownWrites = new OwnManifestWrites(this.layout, this.writerName);
  }

  /**
   * Open (creating if needed) the store at `root` and clean up what crashed writers left in tmp/
   * and trash/. Does not read the manifest: a manifest problem surfaces on the calls that need it.
   */
  static async open(root: string, options: ModelStoreOptions = {}): Promise<ModelStore> {
    const store = new ModelStore(root, options);
    const { entries, tmp, trash } = store.layout;
    for (const dir of [root, entries, tmp, trash]) {
      try {
        await fs.mkdir(dir, { recursive: true });
      } catch (e) {
        throw new StoreWriteError(`cannot open model store ${root}: creating ${dir} failed: ${describeFsError(e)}`, errorCode(e), { cause: e });
      }
    }
    if (options.cleanOnOpen !== false) await store.cleanup();
    return store;
  }

  /** Remove abandoned scratch (also done on open; a long-running server may call it now and then). */
  cleanup(): Promise<CleanupResult> {
    return cleanScratch(this.layout, this.staleScratchMs);
  }

  counters(): StoreCounters {
    return { ...this.count };
  }

  entryDir(key: HexDigest): string {
    checkKey(key);
    return join(this.layout.entries, key);
  }

  /**
   * Publish the entry `key` by running `write` into a fresh scratch directory, recording every
   * file's size and SHA-256 in entry.json, fsyncing, and renaming it into entries/ in one step.
   * An entry already there is a hit when it is sound, contents included (every file is hashed
   * again: a put runs off the serving thread), and `write` is not called; if another writer
   * publishes the same key first, this copy is discarded and the result is a hit too. A damaged
   * entry in the way (a cut file, or content changed after it was written) is moved aside and
   * rewritten. Fails with StoreWriteError (full disk, read-only store,
   * a writer that threw, ...) leaving nothing visible, or ManifestVersionError when a newer
   * release owns the store. Either outcome marks the entry used.
   */
  async put(key: HexDigest, write: EntryWriter, origin: EntryOrigin): Promise<PutResult> {
    checkKey(key);
    const expected = storeKey(origin.sourceDigest, origin.recipe);
    if (expected !== key) throw new StoreInputError(`key ${key} is not the content address of this source and recipe (that is ${expected})`);
    await this.refuseIfNewerManifest();
    const dir = this.entryDir(key);
    if (await pathExists(dir)) {
      const existing = await checkEntryDirectory(dir, key, { contents: true });
      if (!isEntryProblem(existing)) {
        this.count.hits++;
        await this.markUsed(key);
        return { key, dir, record: existing, outcome: 'hit' };
      }
      try {
        await this.moveToTrash(key); // damaged: it would shadow the rewrite forever
      } catch (e) {
        this.count.failedPuts++;
        throw new StoreWriteError(`cannot move damaged model-store entry ${key} aside (${existing.reason}): ${describeFsError(e)}`, errorCode(e), { cause: e });
      }
    }

    const scratch = join(this.layout.tmp, scratchName(key));
    markScratchInUse(scratch);
    try {
      const record = await writeEntryInScratch(scratch, key, write, origin, { root: this.root, tmp: this.layout.tmp, writerName: this.writerName });
      try {
        await fs.rename(scratch, dir);
      } catch (e) {
        if (errorCode(e) !== 'ENOTEMPTY' && errorCode(e) !== 'EEXIST') throw e;
        // Another writer published the same key first: same content by construction, keep theirs.
        const winner = await checkEntryDirectory(dir, key);
        if (isEntryProblem(winner)) throw new EntryInvalidError(key, winner.file, winner.reason);
        this.count.hits++;
        await this.markUsed(key);
        return { key, dir, record: winner, outcome: 'hit' };
      }
      await fsyncDirectory(this.layout.entries);
      this.count.written++;
      return { key, dir, record, outcome: 'written' };
    } catch (e) {
      this.count.failedPuts++;
      if (e instanceof StoreWriteError || e instanceof EntryInvalidError || e instanceof StoreInputError) throw e;
      throw new StoreWriteError(`writing model-store entry ${key} in ${this.root} failed: ${describeFsError(e)}`, errorCode(e), { cause: e });
    } finally {
      await fs.rm(scratch, { recursive: true, force: true }).catch(() => undefined); // gone after a rename; else our leftovers
      releaseScratch(scratch);
    }
  }

  /**
   * The entry `key` for loading: undefined when there is none; EntryInvalidError (naming the
   * file) when it is there but incomplete or damaged (missing or cut files are caught by size).
   * Contents are not hashed here: the loader checks them with checkEntryContents off the serving
   * thread before it reads the weights. Marks it used for LRU eviction.
   */
  async get(key: HexDigest): Promise<StoredEntry | undefined> {
    const dir = this.entryDir(key);
    if (!(await pathExists(dir))) {
      this.count.misses++;
      return undefined;
    }
    const record = await checkEntryDirectory(dir, key);
    if (isEntryProblem(record)) {
      this.count.invalid++;
      throw new EntryInvalidError(key, record.file, record.reason);
    }
    this.count.hits++;
    await this.markUsed(key);
    return { key, dir, record };
  }

  /**
   * Check an entry without using it: entry.json, every listed file present with its recorded size,
   * and with `contents` its recorded SHA-256 (reads every byte).
   */
  async verify(key: HexDigest, options: { contents?: boolean } = {}): Promise<VerifyResult> {
    const dir = this.entryDir(key);
    if (!(await pathExists(dir))) return { ok: false, file: dir, reason: `there is no entry ${key} in ${this.root}` };
    const record = await checkEntryDirectory(dir, key, options);
    return isEntryProblem(record) ? { ok: false, file: record.file, reason: record.reason } : { ok: true, record };
  }

  /** Record a use now (best effort: a read-only store still serves). */
  async markUsed(key: HexDigest): Promise<void> {
    const file = join(this.entryDir(key), LAST_USED_FILE);
    const now = new Date();
    try {
      await fs.utimes(file, now, now);
    } catch (e) {
      if (errorCode(e) === 'ENOENT') await fs.writeFile(file, '').catch(() => undefined);
    }
  }

  /** Every entry directory (scratch never appears), with size, recipe, last use and manifest references. */
  async list(): Promise<EntrySummary[]> {
    const references = await this.manifestReferences();
    const out: EntrySummary[] = [];
    for (const key of (await fs.readdir(this.layout.entries)).filter(isHexDigest).sort()) {
      const summary = await summarizeEntry(join(this.layout.entries, key), key, references.get(key) ?? []);
      if (summary) out.push(summary); // else removed meanwhile
    }
    return out;
  }

  /**
   * Delete the entry `key`: refused with EntryReferencedError while the manifest serves it, unless
   * `force`. It is renamed into trash/ first (one atomic step: a crash leaves it whole or gone),
   * then deleted. False when there was no such entry.
   */
  async remove(key: HexDigest, options: { force?: boolean } = {}): Promise<boolean> {
    checkKey(key);
    let references: Map<string, string[]>;
    try {
      references = await this.manifestReferences();
    } catch (e) {
      // A corrupt manifest cannot say what it references; only force goes ahead. A newer one: never.
      if (!(options.force && e instanceof ManifestCorruptError)) throw e;
      references = new Map();
    }
    const users = references.get(key);
    if (users && !options.force) throw new EntryReferencedError(key, users);
    const removed = await this.moveToTrash(key);
    if (removed) this.count.removed++;
    return removed;
  }

  /**
   * Remove least recently used entries that no manifest variant references until the store holds
   * at most `maxBytes` (damaged entries go first). Entries used or written within `graceMs`
   * (default 10 min) are kept: they may be about to enter the manifest (a replica that has just
   * pruned writes the entry, then the manifest). The result can stay above `maxBytes` when what
   * is left is referenced or recent. `keep` names entries the caller serves from memory: kept too,
   * whether or not a manifest lists them yet (a manifest write of theirs may have failed).
   */
  async evict(maxBytes: number, options: { graceMs?: number; keep?: ReadonlySet<HexDigest> } = {}): Promise<EvictionResult> {
    if (!(Number.isFinite(maxBytes) && maxBytes >= 0)) throw new StoreInputError(`maxBytes must be a non-negative number, got ${maxBytes}`);
    await this.refuseIfNewerManifest();
    const entries = await this.list();
    const bytesBefore = entries.reduce((n, e) => n + e.bytes, 0);
    const candidates = evictionCandidates(entries, options.graceMs ?? DEFAULT_EVICT_GRACE_MS, options.keep, Date.now());
    let bytes = bytesBefore;
    const evicted: EntrySummary[] = [];
    for (const entry of candidates) {
      if (bytes <= maxBytes) break;
      try {
        if (!(await this.remove(entry.key))) continue; // someone else removed it
      } catch (e) {
        if (e instanceof EntryReferencedError) continue; // referenced since we listed
        throw e;
      }
      bytes -= entry.bytes;
      evicted.push(entry);
    }
    return { evicted, bytesBefore, bytesAfter: bytes };
  }

  /** The manifest now; ManifestVersionError / ManifestCorruptError when it cannot be used. */
  readManifest(): Promise<ManifestSnapshot> {
    return readManifestFile(this.layout.manifest);
  }

  /**
   * Replace the manifest with `state` atomically. Last writer wins: a concurrent write by another
   * replica is overwritten, not merged. Refuses (writing nothing) over a newer-version or corrupt
   * manifest, or for a malformed state.
   */
  writeManifest(state: ManifestState): Promise<Manifest> {
    return this.ownWrites.write(state);
  }

  /**
   * Read, change, write. Not a transaction: another replica writing between the read and the
   * write loses its change (last writer wins).
   */
  async updateManifest(change: (current: ManifestState | null) => ManifestState): Promise<Manifest> {
    const { manifest } = await this.readManifest();
    return this.writeManifest(change(manifest && stateOf(manifest)));
  }

  /**
   * Poll the manifest every `intervalMs` and call `onChange` with each new content written by
   * another process (this store's own writes are not reported). Pass `baseline` (the digest from
   * readManifest) to hear only about later changes; without it the current manifest is reported
   * first. Unusable manifests go to `onError`, once per content.
   */
  watchManifest(intervalMs: number, onChange: (snapshot: ManifestSnapshot) => void | Promise<void>, options: WatchOptions = {}): ManifestWatch {
    return this.ownWrites.watch(intervalMs, onChange, options);
  }

  /** Store key → manifest variant ids; throws for a manifest that cannot be read. */
  private async manifestReferences(): Promise<Map<string, string[]>> {
    const { manifest } = await this.readManifest();
    const refs = new Map<string, string[]>();
    for (const v of manifest?.variants ?? []) refs.set(v.key, [...(refs.get(v.key) ?? []), v.id]);
    return refs;
  }

  /** Writes are refused while a newer release's manifest is in the store; a corrupt one does not block entries. */
  private async refuseIfNewerManifest(): Promise<void> {
    try {
      await this.readManifest();
    } catch (e) {
      if (!(e instanceof ManifestCorruptError)) throw e;
    }
  }

  private async moveToTrash(key: HexDigest): Promise<boolean> {
    const trashed = join(this.layout.trash, scratchName(key));
    await fs.mkdir(this.layout.trash, { recursive: true }); // so ENOENT below can only mean "no such entry"
    try {
      await fs.rename(this.entryDir(key), trashed);
    } catch (e) {
      if (errorCode(e) === 'ENOENT') return false;
      throw e;
    }
    await fsyncDirectory(this.layout.entries);
    await fs.rm(trashed, { recursive: true, force: true });
    return true;
  }
}

function checkKey(key: string): void {
  if (!isHexDigest(key)) throw new StoreInputError(`a store key is 64 lowercase hex characters (storeKey()), got ${JSON.stringify(key)}`);
}
