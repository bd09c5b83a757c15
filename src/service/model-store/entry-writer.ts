/**
 * Writing a new entry in scratch: the caller's writer fills the directory, then every file's size
 * and SHA-256 go into entry.json and everything is fsynced, so the one rename that publishes the
 * entry never makes half an entry visible.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { fsyncDirectoryTree, listFilesInTree, writeFileSynced } from './durable-fs.ts';
import { ENTRY_FILE, type EntryRecord, hashAndSyncFiles, LAST_USED_FILE, RESERVED_FILES } from './entry-record.ts';
import { describeFsError, errorCode, StoreInputError, StoreWriteError } from './errors.ts';
import { type EntryRecipe, type HexDigest, STORE_FORMAT_VERSION } from './store-key.ts';

/** What an entry is the result of; its key must be storeKey(sourceDigest, recipe). */
export interface EntryOrigin {
  sourceDigest: HexDigest;
  recipe: EntryRecipe;
}

/**
 * Writes the checkpoint files into `dir` (an empty directory inside the store), e.g.
 * `(dir) => writePrunedModel(dir, pruned, source, report)`. It must not create entry.json or
 * last-used, nor symlinks.
 */
export type EntryWriter = (dir: string) => Promise<void>;

export interface ScratchPlace {
  /** The store root (for messages), its tmp/ directory, and the writer recorded in entry.json. */
  root: string;
  tmp: string;
  writerName: string;
}

/** Create `scratch`, run `write` into it and complete it as entry `key`; its record. */
export async function writeEntryInScratch(scratch: string, key: HexDigest, write: EntryWriter, origin: EntryOrigin, place: ScratchPlace): Promise<EntryRecord> {
  try {
    await fs.mkdir(place.tmp, { recursive: true }); // recreates tmp/ if someone removed it
    // Not recursive: a recursive mkdir reports ENOENT on a read-only filesystem instead of EROFS.
    await fs.mkdir(scratch);
  } catch (e) {
    throw new StoreWriteError(`cannot write to model store ${place.root}: ${describeFsError(e)}`, errorCode(e), { cause: e });
  }
  try {
    await write(scratch);
  } catch (e) {
    throw new StoreWriteError(`writing the checkpoint for model-store entry ${key} failed: ${describeFsError(e)}`, errorCode(e), { cause: e });
  }
  const files = await listFilesInTree(scratch);
  const reserved = files.find((f) => RESERVED_FILES.includes(f.path));
  if (reserved) throw new StoreInputError(`the entry writer created ${reserved.path}, a name the store reserves for itself`);
  if (files.length === 0) throw new StoreInputError(`the entry writer for ${key} wrote no files`);
  const entryFiles = await hashAndSyncFiles(files);
  const record: EntryRecord = {
    formatVersion: STORE_FORMAT_VERSION,
    key,
    sourceDigest: origin.sourceDigest,
    recipe: origin.recipe,
    createdAt: new Date().toISOString(),
    writer: place.writerName,
    files: entryFiles,
    totalBytes: entryFiles.reduce((n, f) => n + f.bytes, 0),
  };
  await writeFileSynced(join(scratch, LAST_USED_FILE), '');
  await writeFileSynced(join(scratch, ENTRY_FILE), JSON.stringify(record, null, 2) + '\n');
  await fsyncDirectoryTree(scratch);
  return record;
}
