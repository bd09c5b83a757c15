/** The model store's public surface (see README.md). */
export { canonicalJson, type JsonValue } from './canonical-json.ts';
export { digestFile, digestWeights } from './digest.ts';
export { checkEntryContents, ENTRY_FILE, type EntryFile, type EntryProblem, type EntryRecord, LAST_USED_FILE } from './entry-record.ts';
export {
  EntryInvalidError,
  EntryReferencedError,
  ManifestCorruptError,
  ManifestVersionError,
  StoreInputError,
  StoreWriteError,
} from './errors.ts';
export {
  MANIFEST_FILE,
  MANIFEST_VERSION,
  type Manifest,
  type ManifestSnapshot,
  type ManifestSplit,
  type ManifestState,
  type ManifestVariant,
  stateOf,
} from './manifest.ts';
export type { ManifestWatch } from './manifest-watch.ts';
export type { EntrySummary } from './entry-summary.ts';
export type { EntryOrigin, EntryWriter } from './entry-writer.ts';
export type { EvictionResult } from './eviction.ts';
export { ModelStore, type ModelStoreOptions, type PutResult, type StoreCounters, type StoredEntry, type VerifyResult } from './model-store.ts';
export type { CleanupResult } from './scratch-cleanup.ts';
export { type HexDigest, isHexDigest, type EntryRecipe, STORE_FORMAT_VERSION, storeKey } from './store-key.ts';
