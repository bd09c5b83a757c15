/**
 * The text files a prune names (calibration, recovery data), checked before anything reads them:
 * only regular files, at most MAX_INPUT_FILE_BYTES, read within a time bound. A FIFO nobody
 * writes, a device such as /dev/zero, a directory or a socket would otherwise block its reader
 * (and with it the prune slot) forever, or fill memory.
 */
import { createHash } from 'node:crypto';
import { constants, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { MopInputError } from '../../mop/errors.ts';
import type { HexDigest } from '../model-store/index.ts';
import type { PruneOption } from './prune-options.ts';

/** The largest calibration or recovery text a prune reads (its worker tokenizes all of it). */
export const MAX_INPUT_FILE_BYTES = 64 * 2 ** 20;
/** How long hashing one input file may take. */
export const INPUT_READ_TIMEOUT_MS = 30_000;

/** A file option that cannot be used: answered 400 with the option's JSON name as the param. */
export class PruneFileError extends MopInputError {
  // Named as its base: callers that report a MopInputError by name (the CLI) see no difference.
  constructor(
    message: string,
    /** The request field (JSON name) that named the file. */
    readonly field: string,
  ) {
    super(message);
  }
}

export interface InputFileLimits {
  maxBytes?: number;
  timeoutMs?: number;
  /** Stops a read in progress (the job was cancelled). */
  signal?: AbortSignal;
}

/** What a path that is not a regular file is, in words. */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function fileError(o: PruneOption, path: string, reason: string): PruneFileError {
  return new PruneFileError(`${o.name} file ${path}: ${reason}`, o.json);
}

function check(o: PruneOption, path: string, st: Stats, maxBytes: number): number {
  if (!st.isFile()) throw fileError(o, path, `${kindOf(st)}; a regular text file is needed`);
  if (st.size > maxBytes) throw fileError(o, path, `${(st.size / 2 ** 20).toFixed(1)} MiB; at most ${maxBytes / 2 ** 20} MiB of text is read, name a smaller regular text file`);
  return st.size;
}

function openError(o: PruneOption, path: string, e: unknown): PruneFileError {
  const code = (e as { code?: unknown }).code;
  return fileError(o, path, code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message);
}

/**
 * Run `work` within `timeoutMs` and until `signal` aborts; `stop` tells the work to end early.
 * A read stuck in the kernel (a hung network mount) cannot be interrupted: the caller moves on.
 */
async function bounded<T>(work: (stop: AbortSignal) => Promise<T>, timeoutMs: number, signal: AbortSignal | undefined, onTimeout: () => Error): Promise<T> {
  signal?.throwIfAborted();
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  try {
    return await Promise.race([
      work(stop.signal),
      new Promise<never>((_, reject) => stop.signal.addEventListener('abort', () => reject(signal?.aborted ? new DOMException('cancelled', 'AbortError') : onTimeout()), { once: true })),
    ]);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    stop.abort();
  }
}

/**
 * The size of a usable input file: a regular file of at most `maxBytes`. Stat first: opening a
 * FIFO waits for a writer, and reading a device never ends.
 */
export async function checkInputFile(o: PruneOption, path: string, limits: InputFileLimits = {}): Promise<number> {
  const maxBytes = limits.maxBytes ?? MAX_INPUT_FILE_BYTES;
  return bounded(
    async () => {
      let st: Stats;
      try {
        st = await fs.stat(path);
      } catch (e) {
        throw openError(o, path, e);
      }
      return check(o, path, st, maxBytes);
    },
    limits.timeoutMs ?? INPUT_READ_TIMEOUT_MS,
    limits.signal,
    () => fileError(o, path, `no answer within ${(limits.timeoutMs ?? INPUT_READ_TIMEOUT_MS) / 1000} s; name a regular text file on a local disk`),
  );
}

/** SHA-256 of a usable input file (see checkInputFile), read within the time bound. */
export async function digestInputFile(o: PruneOption, path: string, limits: InputFileLimits = {}): Promise<HexDigest> {
  const maxBytes = limits.maxBytes ?? MAX_INPUT_FILE_BYTES;
  const timeoutMs = limits.timeoutMs ?? INPUT_READ_TIMEOUT_MS;
  return bounded(
    async (stop) => {
      let st: Stats;
      try {
        st = await fs.stat(path);
      } catch (e) {
        throw openError(o, path, e);
      }
      check(o, path, st, maxBytes);
      let handle: FileHandle;
      try {
        // Non-blocking: should the path have become a FIFO since the stat, the open does not wait.
        handle = await fs.open(path, constants.O_RDONLY | constants.O_NONBLOCK);
      } catch (e) {
        throw openError(o, path, e);
      }
      try {
        check(o, path, await handle.stat(), maxBytes);
        const hash = createHash('sha256');
        const buf = Buffer.allocUnsafe(1 << 20);
        let total = 0;
        for (;;) {
          stop.throwIfAborted();
          const { bytesRead } = await handle.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          total += bytesRead;
          // It grew since the stat.
          if (total > maxBytes) throw fileError(o, path, `more than ${maxBytes / 2 ** 20} MiB; name a smaller regular text file`);
          hash.update(buf.subarray(0, bytesRead));
        }
        return hash.digest('hex');
      } finally {
        await handle.close();
      }
    },
    timeoutMs,
    limits.signal,
    () => fileError(o, path, `not read within ${timeoutMs / 1000} s; name a regular text file on a local disk`),
  );
}
