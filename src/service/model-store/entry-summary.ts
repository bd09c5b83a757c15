/** One entry as `list()` shows it: size, recipe, last use, who references it, and what is wrong with it. */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { directoryBytes } from './durable-fs.ts';
import { checkEntryDirectory, isEntryProblem, LAST_USED_FILE } from './entry-record.ts';
import { errorCode } from './errors.ts';
import type { EntryRecipe, HexDigest } from './store-key.ts';

export interface EntrySummary {
  key: HexDigest;
  dir: string;
  /** From entry.json; null when it cannot be read (see `problem`). */
  recipe: EntryRecipe | null;
  sourceDigest: HexDigest | null;
  /** Bytes of all files in the entry directory. */
  bytes: number;
  createdAt: string | null;
  /** ISO time it was last handed out by get() (or written). */
  lastUsedAt: string;
  /** Manifest variant ids that serve it. */
  referencedBy: string[];
  /** Why the entry cannot be loaded, naming the file; null for a sound entry. */
  problem: string | null;
}

/** Entry `key` in `dir` (sizes checked, contents not); undefined when it was removed meanwhile. */
export async function summarizeEntry(dir: string, key: HexDigest, referencedBy: string[]): Promise<EntrySummary | undefined> {
  const record = await checkEntryDirectory(dir, key);
  const problem = isEntryProblem(record) ? record.reason : null;
  const sound = isEntryProblem(record) ? undefined : record;
  let bytes: number;
  let lastUsed: Date;
  try {
    bytes = await directoryBytes(dir);
    lastUsed = (await fs.stat(join(dir, LAST_USED_FILE)).catch(() => fs.stat(dir))).mtime;
  } catch (e) {
    if (errorCode(e) === 'ENOENT') return undefined;
    throw e;
  }
  return {
    key,
    dir,
    recipe: sound?.recipe ?? null,
    sourceDigest: sound?.sourceDigest ?? null,
    bytes,
    createdAt: sound?.createdAt ?? null,
    lastUsedAt: lastUsed.toISOString(),
    referencedBy,
    problem,
  };
}
