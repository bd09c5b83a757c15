import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { digestFile } from './digest.ts';
import { errorCode } from './errors.ts';
import { type FileInTree, listFilesInTree } from './durable-fs.ts';
import { isHexDigest, type HexDigest, type EntryRecipe, STORE_FORMAT_VERSION, storeKey } from './store-key.ts';

/** The file inside every entry directory that describes it; written last, before the publishing rename. */
export const ENTRY_FILE = 'entry.json';
/** Touched whenever the entry is handed out for loading: its mtime is the entry's last use (for LRU eviction). */
export const LAST_USED_FILE = 'last-used';
/** Names a checkpoint writer must not create: the store owns them. */
export const RESERVED_FILES: readonly string[] = [ENTRY_FILE, LAST_USED_FILE];

/** One checkpoint file as recorded at write time. */
export interface EntryFile {
  /** Relative to the entry directory, '/'-separated. */
  path: string;
  bytes: number;
  sha256: HexDigest;
}

/** entry.json: what an entry is and what it must contain. */
export interface EntryRecord {
  formatVersion: number;
  key: HexDigest;
  sourceDigest: HexDigest;
  recipe: EntryRecipe;
  /** ISO time the entry was written. */
  createdAt: string;
  /** Which process wrote it (`host:pid`). */
  writer: string;
  /** Every checkpoint file, sorted by path (entry.json and last-used excluded). */
  files: EntryFile[];
  totalBytes: number;
}

/** Why an entry cannot be used: the file it is about and a sentence naming it. */
export interface EntryProblem {
  file: string;
  reason: string;
}

/** Read each file once: SHA-256 of its content and fsync of its data, together. */
export async function hashAndSyncFiles(files: readonly FileInTree[]): Promise<EntryFile[]> {
  const out: EntryFile[] = [];
  for (const f of files) {
    const handle = await fs.open(f.absolute, 'r');
    try {
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of handle.createReadStream({ autoClose: false })) {
        hash.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      await handle.sync();
      out.push({ path: f.path, bytes, sha256: hash.digest('hex') });
    } finally {
      await handle.close();
    }
  }
  return out;
}

/** Parse entry.json's text; a problem (naming the file) when it is not a current, consistent record for `key`. */
export function parseEntryRecord(text: string, file: string, key: string): EntryRecord | EntryProblem {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { file, reason: `${file} is not valid JSON (${(e as Error).message})` };
  }
  const r = value as Partial<EntryRecord> | null;
  if (r === null || typeof r !== 'object') return { file, reason: `${file} is not a JSON object` };
  if (typeof r.formatVersion !== 'number') return { file, reason: `${file} has no formatVersion` };
  if (r.formatVersion > STORE_FORMAT_VERSION) {
    return { file, reason: `${file} has format version ${r.formatVersion}, this mop-serve reads version ${STORE_FORMAT_VERSION} (written by a newer release)` };
  }
  if (r.formatVersion !== STORE_FORMAT_VERSION) return { file, reason: `${file} has unsupported format version ${r.formatVersion}` };
  if (r.key !== key) return { file, reason: `${file} records key ${JSON.stringify(r.key)}, but the entry directory is ${key}` };
  if (!isHexDigest(r.sourceDigest)) return { file, reason: `${file} has no valid sourceDigest` };
  if (typeof r.createdAt !== 'string' || typeof r.writer !== 'string' || typeof r.totalBytes !== 'number') {
    return { file, reason: `${file} lacks createdAt, writer or totalBytes` };
  }
  let recomputed: string;
  try {
    recomputed = storeKey(r.sourceDigest, r.recipe as EntryRecipe);
  } catch (e) {
    return { file, reason: `${file} has an invalid recipe: ${(e as Error).message}` };
  }
  if (recomputed !== key) return { file, reason: `${file}'s source digest and recipe hash to ${recomputed}, not to its key ${key}` };
  if (!Array.isArray(r.files)) return { file, reason: `${file} has no file list` };
  for (const f of r.files as unknown[]) {
    const ef = f as Partial<EntryFile> | null;
    if (ef === null || typeof ef !== 'object' || typeof ef.path !== 'string' || !safeRelativePath(ef.path) || !Number.isInteger(ef.bytes) || !isHexDigest(ef.sha256)) {
      return { file, reason: `${file} has a malformed file record ${JSON.stringify(f)}` };
    }
  }
  return r as EntryRecord;
}

/** A path inside the entry: relative, no '..', no empty or '.' components. */
function safeRelativePath(p: string): boolean {
  return p !== '' && !p.startsWith('/') && p.split('/').every((c) => c !== '' && c !== '.' && c !== '..');
}

export function isEntryProblem(x: EntryRecord | EntryProblem): x is EntryProblem {
  return (x as EntryProblem).reason !== undefined;
}

/**
 * Check an entry directory: entry.json is a current, consistent record, and every file it lists
 * exists with the recorded size (a cut safetensors is caught here) and, with `contents`, the
 * recorded SHA-256 and nothing unlisted beside it (checkEntryContents: reads every byte). Returns
 * the record, or the first problem found.
 */
export async function checkEntryDirectory(dir: string, key: string, options: { contents?: boolean } = {}): Promise<EntryRecord | EntryProblem> {
  const recordPath = join(dir, ENTRY_FILE);
  let text: string;
  try {
    text = await fs.readFile(recordPath, 'utf8');
  } catch (e) {
    if (errorCode(e) === 'ENOENT') return { file: recordPath, reason: `${recordPath} is missing (an incomplete entry)` };
    return { file: recordPath, reason: `${recordPath} cannot be read: ${(e as Error).message}` };
  }
  const record = parseEntryRecord(text, recordPath, key);
  if (isEntryProblem(record)) return record;
  for (const f of record.files) {
    const abs = join(dir, ...f.path.split('/'));
    let size: number;
    try {
      // lstat: a symlink in place of a recorded file could point anywhere, later.
      const st = await fs.lstat(abs);
      if (!st.isFile()) return { file: abs, reason: `${abs} is not a regular file` };
      size = st.size;
    } catch (e) {
      if (errorCode(e) === 'ENOENT') return { file: abs, reason: `${abs} is missing` };
      return { file: abs, reason: `${abs} cannot be read: ${(e as Error).message}` };
    }
    if (size !== f.bytes) {
      return { file: abs, reason: `${abs} is ${size} bytes, ${ENTRY_FILE} records ${f.bytes} (truncated or changed after it was written)` };
    }
  }
  if (options.contents) {
    const problem = await checkEntryContents(dir, record);
    if (problem) return problem;
  }
  return record;
}

/**
 * The content check of an entry whose record was already read: every listed file hashes to its
 * recorded SHA-256, and the directory holds no file the record does not list (a loader could read
 * one: a shard index, a generation config). Reads every byte; undefined when the entry is sound.
 */
export async function checkEntryContents(dir: string, record: Pick<EntryRecord, 'files'>): Promise<EntryProblem | undefined> {
  let present: FileInTree[];
  try {
    present = await listFilesInTree(dir);
  } catch (e) {
    return { file: dir, reason: `${dir} cannot be listed: ${(e as Error).message}` };
  }
  const listed = new Set(record.files.map((f) => f.path));
  const extra = present.find((f) => !listed.has(f.path) && !RESERVED_FILES.includes(f.path));
  if (extra) return { file: extra.absolute, reason: `${extra.absolute} is not listed in ${ENTRY_FILE} (added after the entry was written)` };
  const byPath = new Map(present.map((f) => [f.path, f]));
  for (const f of record.files) {
    const abs = join(dir, ...f.path.split('/'));
    if (!byPath.has(f.path)) return { file: abs, reason: `${abs} is missing or not a regular file` };
    let digest: string;
    try {
      digest = await digestFile(abs);
    } catch (e) {
      return { file: abs, reason: `${abs} cannot be read: ${(e as Error).message}` };
    }
    if (digest !== f.sha256) return { file: abs, reason: `${abs} has SHA-256 ${digest}, ${ENTRY_FILE} records ${f.sha256} (its content changed after it was written)` };
  }
  return undefined;
}
