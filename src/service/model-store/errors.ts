/**
 * Typed failures of the model store. Each message names the file or entry it is about and says
 * what to do, so a server can log `err.message` as its one line and carry on without the store.
 */

/** A value handed to the store is malformed (bad key, recipe, manifest state). Nothing was written. */
export class StoreInputError extends Error {
  override name = 'StoreInputError';
}

/** manifest.json was written by a newer mop-serve: this one neither interprets nor overwrites it. */
export class ManifestVersionError extends Error {
  override name = 'ManifestVersionError';
  constructor(
    readonly file: string,
    readonly version: unknown,
    readonly supported: number,
  ) {
    super(
      `${file} has manifest version ${JSON.stringify(version)}, this mop-serve understands version ${supported} only ` +
        `(written by a newer release?); the store is left untouched: upgrade this server or point it at another store`,
    );
  }
}

/** manifest.json exists but is not a manifest (bad JSON or bad fields). It is never overwritten blindly. */
export class ManifestCorruptError extends Error {
  override name = 'ManifestCorruptError';
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file} is not a valid model-store manifest: ${reason}; fix or delete the file (the store does not overwrite it)`);
  }
}

/**
 * An entry directory exists but is incomplete or damaged (a missing or cut file, or content that no
 * longer matches the SHA-256 recorded when it was written); `file` is the first file found wrong.
 */
export class EntryInvalidError extends Error {
  override name = 'EntryInvalidError';
  constructor(
    readonly key: string,
    readonly file: string,
    readonly reason: string,
  ) {
    super(`model-store entry ${key} is invalid: ${reason}; it is not loaded: run the same prune again to rewrite it, or delete the entry's directory`);
  }
}

/** Removing an entry that the manifest still serves, without `force`. */
export class EntryReferencedError extends Error {
  override name = 'EntryReferencedError';
  constructor(
    readonly key: string,
    readonly variants: readonly string[],
  ) {
    super(`model-store entry ${key} is referenced by variant(s) ${variants.join(', ')}; unload them (which removes them from the manifest) first, or force the removal`);
  }
}

/**
 * Writing to the store failed (full disk, read-only or unwritable directory, a writer that threw).
 * `code` is the errno code when there is one (ENOSPC, EROFS, EACCES, ...); the cause is attached.
 */
export class StoreWriteError extends Error {
  override name = 'StoreWriteError';
  constructor(
    message: string,
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The errno-style code of an error from node:fs (or anything shaped like one). */
export function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

const plainReasons: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a path component is not a directory',
  ENOENT: 'no such file or directory',
};

/** "no space left on device (ENOSPC)" for an errno error, else its message. */
export function describeFsError(e: unknown): string {
  const code = errorCode(e);
  const plain = code !== undefined ? plainReasons[code] : undefined;
  if (plain !== undefined) return `${plain} (${code})`;
  return e instanceof Error ? e.message : String(e);
}
