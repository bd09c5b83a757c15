/**
 * Manifest writes by one store handle, remembered (the last few digests) so that its watchers
 * report only what other processes wrote.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { type Manifest, type ManifestSnapshot, type ManifestState, writeManifestFile } from './manifest.ts';
import { type ManifestWatch, watchManifestFile } from './manifest-watch.ts';
import { markScratchInUse, releaseScratch, scratchName } from './scratch-names.ts';
import type { StoreLayout } from './store-layout.ts';

/** Recent own manifest writes, remembered so watchers do not report them back. */
const OWN_WRITES_REMEMBERED = 16;

export interface WatchOptions {
  onError?: (error: unknown) => void;
  baseline?: string;
}

export class OwnManifestWrites {
  private readonly digests: string[] = [];

  constructor(
    private readonly layout: StoreLayout,
    private readonly writerName: string,
  ) {}

  async write(state: ManifestState): Promise<Manifest> {
    const tmp = join(this.layout.tmp, scratchName('manifest'));
    markScratchInUse(tmp);
    try {
      await fs.mkdir(this.layout.tmp, { recursive: true });
      // Remembered before the rename, so a watcher polling right after it already knows the digest.
      const written = await writeManifestFile(this.layout.manifest, tmp, state, this.writerName, (digest) => {
        this.digests.push(digest);
        if (this.digests.length > OWN_WRITES_REMEMBERED) this.digests.shift();
      });
      return written.manifest;
    } finally {
      releaseScratch(tmp);
    }
  }

  /** Watch the manifest file; contents this handle wrote are not reported. */
  watch(intervalMs: number, onChange: (snapshot: ManifestSnapshot) => void | Promise<void>, options: WatchOptions): ManifestWatch {
    return watchManifestFile(this.layout.manifest, {
      intervalMs,
      onChange,
      ...(options.onError && { onError: options.onError }),
      ...(options.baseline !== undefined && { baseline: options.baseline }),
      isOwnWrite: (digest) => this.digests.includes(digest),
    });
  }
}
