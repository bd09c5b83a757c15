/**
 * Following a manifest that other processes (other replicas, on other machines) rewrite. Polling,
 * not fs.watch: shared volumes (NFS, most ReadWriteMany drivers) do not deliver inotify events for
 * writes made elsewhere. Each poll reads the whole (small) file and compares the SHA-256 of its
 * bytes, so a change is seen even when mtimes are coarse or cached; with an interval of T a change
 * is reported at most about T after it lands (plus the volume's own attribute/data caching).
 */
import { readFile } from 'node:fs/promises';
import { errorCode } from './errors.ts';
import { ABSENT_MANIFEST_DIGEST, type ManifestSnapshot, manifestDigest, parseManifest } from './manifest.ts';

export interface ManifestWatchOptions {
  intervalMs: number;
  /** A new manifest (null: the file was removed). Awaited before the next poll. */
  onChange: (snapshot: ManifestSnapshot) => void | Promise<void>;
  /** A changed file that cannot be used (corrupt, newer version, unreadable); reported once per content. */
  onError?: (error: unknown) => void;
  /**
   * Digest of the state the caller already has (from readManifest); without it the first poll
   * reports whatever is there.
   */
  baseline?: string;
  /** Digests to skip silently (this process's own writes); they still become the new baseline. */
  isOwnWrite?: (digest: string) => boolean;
}

export interface ManifestWatch {
  /** Stops polling; a poll in progress finishes but reports nothing. */
  stop(): void;
}

export function watchManifestFile(file: string, options: ManifestWatchOptions): ManifestWatch {
  if (!(Number.isFinite(options.intervalMs) && options.intervalMs > 0)) throw new RangeError(`intervalMs must be a positive number, got ${options.intervalMs}`);
  let last = options.baseline;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const poll = async (): Promise<void> => {
    let digest: string;
    let bytes: Buffer | undefined;
    try {
      bytes = await readFile(file);
      digest = manifestDigest(bytes);
    } catch (e) {
      if (errorCode(e) !== 'ENOENT') {
        const key = `error:${errorCode(e) ?? String(e)}`;
        if (key !== last && !stopped) options.onError?.(e);
        last = key;
        return;
      }
      digest = ABSENT_MANIFEST_DIGEST;
    }
    if (digest === last || stopped) return;
    last = digest;
    if (options.isOwnWrite?.(digest)) return;
    let snapshot: ManifestSnapshot;
    try {
      snapshot = { manifest: bytes === undefined ? null : parseManifest(bytes, file), digest };
    } catch (e) {
      options.onError?.(e);
      return;
    }
    await options.onChange(snapshot);
  };

  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      poll()
        .catch((e: unknown) => options.onError?.(e))
        .finally(schedule);
    }, options.intervalMs);
    timer.unref(); // a watcher alone does not keep the process alive
  };
  // First look right away when there is no baseline, so a fresh follower catches up at once.
  if (options.baseline === undefined) void poll().catch((e: unknown) => options.onError?.(e)).finally(schedule);
  else schedule();

  return {
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
