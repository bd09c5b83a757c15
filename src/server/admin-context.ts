/**
 * What every /admin route group gets: the service it changes, the server's settings that shape
 * the answers, and the warning a change answer carries while the model-store manifest lags.
 */
import type { ModelService } from '../service/model-service.ts';
import type { PruneRecipe } from '../service/prune/prune-options.ts';

export interface AdminDeps {
  token: string | undefined;
  service: ModelService;
  /** Grace period for requests still running on a variant being unloaded. */
  unloadGraceMs: number;
  /** What a prune request that omits them uses (the server's --prune-* settings). */
  pruneDefaults: Omit<PruneRecipe, 'target'>;
  log: (line: string) => void;
  /** True once shutdown began: admin changes are refused (503 `draining`), reads still answer. */
  draining: () => boolean;
  /** Files a prune request names must lie under this directory (--data-dir); undefined = the bundled data/. */
  dataDir?: string | undefined;
}

/**
 * `model_store_warning` when the change applied here but the model-store manifest could not record
 * it (other replicas do not see it yet; it is retried): the admin's answer says so.
 */
export function storeWarning(service: ModelService): { model_store_warning?: string } {
  const warning = service.storeSync?.unrecorded();
  return warning === undefined ? {} : { model_store_warning: warning };
}
