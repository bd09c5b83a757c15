/**
 * manifest.json: the serving state every replica on the store follows (which variants are loaded,
 * which is active, the A/B split). Replaced atomically as a whole; the last writer wins.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { replaceFileAtomically } from './durable-fs.ts';
import { errorCode, ManifestCorruptError, ManifestVersionError, StoreInputError } from './errors.ts';
import { isHexDigest, type HexDigest } from './store-key.ts';

export const MANIFEST_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';

/** A loaded variant: its served id and the store entry it comes from. */
export interface ManifestVariant {
  id: string;
  key: HexDigest;
}

export interface ManifestSplit {
  /** Variant id that gets `share` of the requests naming no model. */
  variant: string;
  /** In [0, 1]. */
  share: number;
}

/**
 * What a writer decides. `active` and `split.variant` are served ids: one of `variants`, or a
 * model the server has without the store (its base model); null active = the server's default.
 */
export interface ManifestState {
  variants: ManifestVariant[];
  active: string | null;
  split: ManifestSplit | null;
}

/** The file's content: the state plus who wrote it and when. */
export interface Manifest extends ManifestState {
  version: typeof MANIFEST_VERSION;
  /** ISO time of the write. */
  updatedAt: string;
  /** The writing process (`host:pid` unless configured). */
  writer: string;
}

/**
 * The manifest as read at one moment: null when there is none yet, and the SHA-256 of the file's
 * bytes ('absent' without a file), which a watcher compares to notice changes.
 */
export interface ManifestSnapshot {
  manifest: Manifest | null;
  digest: string;
}

export const ABSENT_MANIFEST_DIGEST = 'absent';

/** A StoreInputError naming the first bad field of a state, or nothing. */
export function checkManifestState(state: ManifestState): void {
  const fail = (what: string) => new StoreInputError(`manifest ${what}`);
  if (state === null || typeof state !== 'object') throw fail('state must be an object');
  if (!Array.isArray(state.variants)) throw fail('variants must be an array');
  const ids = new Set<string>();
  state.variants.forEach((v, i) => {
    if (v === null || typeof v !== 'object') throw fail(`variants[${i}] must be an object {id, key}`);
    if (typeof v.id !== 'string' || v.id === '') throw fail(`variants[${i}].id must be a non-empty string`);
    if (!isHexDigest(v.key)) throw fail(`variants[${i}].key must be a 64-character lowercase hex store key, got ${JSON.stringify(v.key)}`);
    if (ids.has(v.id)) throw fail(`variants[${i}].id ${JSON.stringify(v.id)} is listed twice`);
    ids.add(v.id);
  });
  if (state.active !== null && (typeof state.active !== 'string' || state.active === '')) throw fail('active must be a non-empty string or null');
  if (state.split !== null) {
    const s = state.split as Partial<ManifestSplit> | undefined;
    if (s === undefined || typeof s !== 'object') throw fail('split must be {variant, share} or null');
    if (typeof s.variant !== 'string' || s.variant === '') throw fail('split.variant must be a non-empty string');
    if (!(typeof s.share === 'number' && s.share >= 0 && s.share <= 1)) throw fail(`split.share must be a number in [0, 1], got ${JSON.stringify(s.share)}`);
  }
}

/** Parse a manifest file's bytes: ManifestVersionError for a newer version, ManifestCorruptError otherwise. */
export function parseManifest(bytes: Uint8Array, file: string): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new ManifestCorruptError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ManifestCorruptError(file, 'not a JSON object');
  const m = value as Partial<Manifest>;
  if (typeof m.version !== 'number' || !Number.isInteger(m.version) || m.version < 1) {
    throw new ManifestCorruptError(file, `version must be a positive integer, got ${JSON.stringify(m.version)}`);
  }
  if (m.version !== MANIFEST_VERSION) throw new ManifestVersionError(file, m.version, MANIFEST_VERSION);
  if (m.active === undefined || m.split === undefined) throw new ManifestCorruptError(file, 'active and split must be present (null when unset)');
  if (typeof m.updatedAt !== 'string' || typeof m.writer !== 'string') throw new ManifestCorruptError(file, 'updatedAt and writer must be strings');
  const state = m as Manifest;
  try {
    checkManifestState(state);
  } catch (e) {
    throw new ManifestCorruptError(file, (e as Error).message);
  }
  return { ...copyState(state), version: MANIFEST_VERSION, updatedAt: state.updatedAt, writer: state.writer };
}

/** The serving state a manifest records, without its version, time and writer. */
export function stateOf(m: ManifestState): ManifestState {
  return { variants: m.variants, active: m.active, split: m.split };
}

/** Only the known fields, copied: callers cannot alias or smuggle extra fields into the file. */
function copyState(state: ManifestState): ManifestState {
  return {
    variants: state.variants.map((v) => ({ id: v.id, key: v.key })),
    active: state.active,
    split: state.split && { variant: state.split.variant, share: state.split.share },
  };
}

export function manifestDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Read and parse the manifest at `file`; a missing file is `manifest: null`. */
export async function readManifestFile(file: string): Promise<ManifestSnapshot> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    if (errorCode(e) === 'ENOENT') return { manifest: null, digest: ABSENT_MANIFEST_DIGEST };
    throw e;
  }
  return { manifest: parseManifest(bytes, file), digest: manifestDigest(bytes) };
}

/**
 * Replace the manifest at `file` with `state` (stamped with version, time and writer), through
 * `tmpPath` on the same filesystem. Refuses, overwriting nothing, when the current file is of a
 * newer version or corrupt, or when `state` is malformed. Returns what was written and its digest.
 */
export async function writeManifestFile(
  file: string,
  tmpPath: string,
  state: ManifestState,
  writer: string,
  /** Called with the new content's digest just before it is published (a watcher may see it at once). */
  beforePublish?: (digest: string) => void,
): Promise<ManifestSnapshot & { manifest: Manifest }> {
  checkManifestState(state);
  await readManifestFile(file); // throws for a newer or corrupt manifest: those are never overwritten
  const manifest: Manifest = { version: MANIFEST_VERSION, ...copyState(state), updatedAt: new Date().toISOString(), writer };
  const bytes = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
  const digest = manifestDigest(bytes);
  beforePublish?.(digest);
  await replaceFileAtomically(file, tmpPath, bytes);
  return { manifest, digest };
}
