/**
 * Records the changes made on this replica in the manifest. Serving has already changed when a
 * change is recorded, so a failed write is not undone: the change stays pending (one log line) and
 * is written with the next manifest work, a retry every poll interval (which also marks pending
 * entries used, so no replica's eviction takes them), or when another replica's manifest is merged.
 * A purge whose removal is pending deletes its entry only once the removal is recorded.
 */
import { type HexDigest, type Manifest, type ManifestState, type ModelStore, stateOf } from '../model-store/index.ts';
import { applyLocalChange, describeLocalChange, EMPTY_STATE, type LocalChange, rebasePending } from './manifest-changes.ts';
import type { SerialQueue } from './serial-queue.ts';

export interface ManifestRecorderOptions {
  store: ModelStore;
  /** Manifest work, one piece at a time; the recorder's writes and retries join it. */
  queue: SerialQueue;
  /** How long after a failed write it is tried again. */
  pollMs: number;
  /** Delete `id`'s entry `key`, its removal now recorded; false when the store refuses. */
  purgeEntry(id: string, key: HexDigest): Promise<boolean>;
  /** Counts a failed manifest write. */
  onWriteFailure(): void;
  log: (line: string) => void;
}

export class ManifestRecorder {
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

  constructor(private readonly options: ManifestRecorderOptions) {}

  /** The manifest read at start-up: what later changes are made on. */
  startFrom(manifest: Manifest): void {
    this.base = stateOf(manifest);
  }

  /** Record `change`, made here; a failed write leaves it pending and says so in the log. */
  record(change: LocalChange): Promise<void> {
    return this.options.queue.run(async () => {
      this.pending.push(change);
      const failure = await this.flush();
      if (failure !== undefined) {
        this.options.log(
          `model store: could not record '${describeLocalChange(change)}' in the manifest: ${failure}; it applies on this replica only until a retry (every ${this.options.pollMs} ms) records it`,
        );
      }
    });
  }

  /** `state` as it is once the pending changes are made on it. */
  withPending(state: ManifestState): ManifestState {
    return this.pending.reduce(applyLocalChange, state);
  }

  /**
   * Another replica wrote `manifest`: the pending changes are rebased onto it (its later choice of
   * active variant or split wins; variants added or removed here stay so). The state to serve.
   */
  rebase(manifest: Manifest): ManifestState {
    const next = stateOf(manifest);
    this.pending = rebasePending(this.pending, this.base, next);
    this.base = next;
    return this.withPending(next);
  }

  /** Whether the removal of `id` is still waiting for the manifest. */
  removalPending(id: string): boolean {
    return this.pending.some((c) => c.kind === 'remove' && c.id === id);
  }

  /** Delete `id`'s entry `key` once its pending removal is recorded. */
  purgeWhenRecorded(id: string, key: HexDigest): void {
    this.deferredPurges.set(id, key);
  }

  /** Write the pending changes onto the current manifest (inside the queue); the failure's message, or undefined. */
  async flush(): Promise<string | undefined> {
    if (this.pending.length === 0) return undefined;
    const changes = this.pending;
    try {
      const written = await this.options.store.updateManifest((current) => changes.reduce(applyLocalChange, current ?? EMPTY_STATE));
      this.pending = [];
      this.base = stateOf(written);
      if (this.writeFailure !== undefined) this.options.log(`model store: the manifest is written again; recorded ${changes.map(describeLocalChange).join(', ')}`);
      this.writeFailure = undefined;
      await this.purgeDeferred(changes);
      return undefined;
    } catch (e) {
      this.options.onWriteFailure();
      this.writeFailure = e instanceof Error ? e.message : String(e);
      this.scheduleRetry();
      return this.writeFailure;
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

  /** No more retries; once the manifest work in progress is done, log what was never recorded. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.options.queue.settled();
    if (this.pending.length > 0) {
      this.options.log(`model store: stopping with changes the manifest never recorded (${this.pending.map(describeLocalChange).join(', ')}): ${this.writeFailure}`);
    }
  }

  /** Purges that waited for their removal to be recorded. */
  private async purgeDeferred(recorded: readonly LocalChange[]): Promise<void> {
    for (const c of recorded) {
      if (c.kind !== 'remove') continue;
      const key = this.deferredPurges.get(c.id);
      if (key === undefined) continue;
      this.deferredPurges.delete(c.id);
      await this.options.purgeEntry(c.id, key);
    }
  }

  /** Try the pending changes again after one poll interval; their entries are marked used meanwhile (no replica evicts them). */
  private scheduleRetry(): void {
    if (this.retryTimer !== undefined || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.options.queue.run(async () => {
        for (const c of this.pending) if (c.kind === 'add') await this.options.store.markUsed(c.key);
        await this.flush();
      });
    }, this.options.pollMs);
    this.retryTimer.unref();
  }
}
