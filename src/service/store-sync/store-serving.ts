/**
 * What the model store's sync needs from the serving side (the model service implements it), so
 * the sync does not depend on the service that uses it. None of these write the manifest.
 */
import type { ManifestSplit } from '../model-store/index.ts';
import type { StoredModel } from './stored-model-io.ts';

export interface StoreServing {
  readonly denseId: string;
  has(id: string): boolean;
  /** The id requests without a model get, and whether `id` can serve now. */
  activeId(): string | undefined;
  isServing(id: string): boolean;
  split(): ManifestSplit | undefined;
  /** Start a stored checkpoint in an engine worker and register it under `id`. */
  addStored(id: string, stored: StoredModel): Promise<void>;
  applyActive(id: string): void;
  applySplit(split: ManifestSplit | undefined): void;
  unloadLocal(id: string): Promise<void>;
}
