/**
 * The few filesystem moves the store's crash safety rests on: data is fsynced before the rename
 * that publishes it, and the directory holding a new name is fsynced after the rename, so after a
 * crash at any instant a reader sees the old state or the new one, never a half-written file.
 */
import { promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import { errorCode } from './errors.ts';

/**
 * fsync a directory so that names created, renamed or removed in it survive a crash. Filesystems
 * that cannot sync a directory (EINVAL, EISDIR, EPERM on some network/FUSE mounts) are accepted
 * silently: there the rename itself is all the durability on offer.
 */
export async function fsyncDirectory(path: string): Promise<void> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, 'r');
  } catch (e) {
    if (errorCode(e) === 'EISDIR' || errorCode(e) === 'EPERM') return;
    throw e;
  }
  try {
    await handle.sync();
  } catch (e) {
    const code = errorCode(e);
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'ENOTSUP') throw e;
  } finally {
    await handle.close();
  }
}

/** Write a new file (fails if it exists) and fsync it before returning. */
export async function writeFileSynced(path: string, data: string | Uint8Array): Promise<void> {
  const handle = await fs.open(path, 'wx');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Replace `target` with `data` atomically: write `tmpPath` (same filesystem), fsync it, rename it
 * over `target`, fsync the target's directory. The tmp file is removed if anything fails.
 */
export async function replaceFileAtomically(target: string, tmpPath: string, data: string | Uint8Array): Promise<void> {
  try {
    await writeFileSynced(tmpPath, data);
    await fs.rename(tmpPath, target);
  } catch (e) {
    await fs.rm(tmpPath, { force: true }).catch(() => undefined);
    throw e;
  }
  await fsyncDirectory(dirname(target));
}

/** A regular file under a directory, by its path relative to it ('/'-separated). */
export interface FileInTree {
  path: string;
  absolute: string;
  bytes: number;
}

/**
 * Every regular file below `root`, sorted by relative path. Symlinks and special files are refused
 * (an entry must be self-contained): the error names them.
 */
export async function listFilesInTree(root: string): Promise<FileInTree[]> {
  const out: FileInTree[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const d of await fs.readdir(dir, { withFileTypes: true })) {
      const rel = prefix === '' ? d.name : `${prefix}/${d.name}`;
      const abs = join(dir, d.name);
      if (d.isDirectory()) await walk(abs, rel);
      else if (d.isFile()) out.push({ path: rel, absolute: abs, bytes: (await fs.stat(abs)).size });
      else throw new Error(`${abs} is not a regular file or directory (a symlink or special file); entries must hold plain files`);
    }
  };
  await walk(root, '');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** fsync every directory below `root`, deepest first, then `root` (the names inside them are then durable). */
export async function fsyncDirectoryTree(root: string): Promise<void> {
  for (const d of await fs.readdir(root, { withFileTypes: true })) {
    if (d.isDirectory()) await fsyncDirectoryTree(join(root, d.name));
  }
  await fsyncDirectory(root);
}

/** Bytes of the regular files below `root` (what it occupies, near enough); tolerant of anything odd inside. */
export async function directoryBytes(root: string): Promise<number> {
  let total = 0;
  for (const d of await fs.readdir(root, { withFileTypes: true })) {
    const abs = join(root, d.name);
    if (d.isDirectory()) total += await directoryBytes(abs);
    else if (d.isFile()) total += (await fs.stat(abs).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

/** Whether anything exists at `path` (without following a final symlink). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await fs.lstat(path);
    return true;
  } catch (e) {
    if (errorCode(e) === 'ENOENT') return false;
    throw e;
  }
}
