import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { StoreLayout } from './store-layout.ts';
import { isAbandonedScratch } from './scratch-names.ts';

/** What a cleanup removed, and what it could not (e.g. on a read-only store). */
export interface CleanupResult {
  removed: string[];
  failed: { path: string; error: string }[];
}

/**
 * Remove leftovers of crashed writers: everything in trash/ (deletions already committed by their
 * rename), and tmp/ scratch that is abandoned (see isAbandonedScratch). Never touches entries/.
 * Failures are collected, not thrown: a store that cannot be cleaned can still be read.
 */
export async function cleanScratch(layout: StoreLayout, staleAfterMs: number, now = Date.now()): Promise<CleanupResult> {
  const result: CleanupResult = { removed: [], failed: [] };
  const remove = async (path: string) => {
    try {
      await fs.rm(path, { recursive: true, force: true });
      result.removed.push(path);
    } catch (e) {
      result.failed.push({ path, error: (e as Error).message });
    }
  };
  for (const name of await namesIn(layout.trash)) await remove(join(layout.trash, name));
  for (const name of await namesIn(layout.tmp)) {
    const path = join(layout.tmp, name);
    const age = now - (await newestMtime(path));
    if (isAbandonedScratch(path, name, age, staleAfterMs)) await remove(path);
  }
  return result;
}

async function namesIn(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch {
    return [];
  }
}

/** Latest mtime of a scratch path and its direct children: a writer still filling it keeps it young. */
async function newestMtime(path: string): Promise<number> {
  let newest = 0;
  try {
    const st = await fs.lstat(path);
    newest = st.mtimeMs;
    if (st.isDirectory()) {
      for (const name of await fs.readdir(path)) {
        const child = await fs.lstat(join(path, name)).catch(() => undefined);
        if (child && child.mtimeMs > newest) newest = child.mtimeMs;
      }
    }
  } catch {
    // vanished meanwhile: age 0 keeps it (someone else is handling it)
    return Date.now();
  }
  return newest;
}
