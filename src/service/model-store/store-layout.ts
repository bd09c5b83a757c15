import { join } from 'node:path';
import { MANIFEST_FILE } from './manifest.ts';

/**
 * Where things live under a store root:
 *   entries/<key>/   published entries (only ever appear by an atomic rename from tmp/)
 *   tmp/             entries and manifests being written (never read as entries)
 *   trash/           entries being deleted (renamed here first, then removed)
 *   manifest.json    the serving state
 * tmp/ and trash/ sit on the store's own filesystem, so every rename stays within it.
 */
export interface StoreLayout {
  root: string;
  entries: string;
  tmp: string;
  trash: string;
  manifest: string;
}

export function storeLayout(root: string): StoreLayout {
  return { root, entries: join(root, 'entries'), tmp: join(root, 'tmp'), trash: join(root, 'trash'), manifest: join(root, MANIFEST_FILE) };
}
