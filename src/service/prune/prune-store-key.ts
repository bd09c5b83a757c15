/**
 * The model-store key of a prune: what the server's admin and start-up prunes and `mop prune
 * --model-store` all compute, so the same work finds the same entry. The key material is the
 * WHOLE recipe as the shared option table resolves it (every setting explicit, defaults filled
 * in), so a field added to PruneRecipe is part of the key without a change here; file settings
 * (the calibration text) are replaced by the SHA-256 of their bytes, so the same text at another
 * path is the same work; plus the block count the ratio is measured against, and for a latency
 * budget the serving target its step-time profile is measured in (int8 and float32 cost differently).
 */
import { defaultCalibrationPath } from '../../mop/calibration.ts';
import { cpuTarget, describeTarget, type ExecutionTarget } from '../../runtime/device/device.ts';
import { defaultRecoverySources } from '../../mop/recovery-data.ts';
import { type EntryRecipe, type HexDigest, storeKey } from '../model-store/index.ts';
import { digestInputFile, type InputFileLimits } from './prune-input-files.ts';
import { namesFile, type PruneRecipe, pruneOptions, SELF_RECOVERY_DATA } from './prune-options.ts';
import { samplesRecoveryText } from './run-prune.ts';

/**
 * Files a text option reads when it is unset (the option table leaves the default unstated). A
 * file option added to the table without an entry here is keyed as unset when unset: add its
 * default files here, or a change to them would not change the key.
 */
const defaultFiles: Partial<Record<keyof PruneRecipe, () => string[]>> = {
  calibration: () => [defaultCalibrationPath()],
  recoveryData: () => defaultRecoverySources().map((s) => s.path),
};

export interface PruneStoreKey {
  key: HexDigest;
  sourceDigest: HexDigest;
  /** The hashed material, recorded in the entry (GET /admin/store shows it). */
  recipe: EntryRecipe;
}

/**
 * The key of pruning the model whose digest is `sourceDigest` with `recipe`, measuring the ratio
 * against `referenceBlocks`. `recipe` may carry fields the option table does not know yet: they
 * are hashed as they are. Reads every file setting: only regular files, within `limits`
 * (PruneFileError when one cannot be read).
 */
export async function pruneStoreKey(sourceDigest: HexDigest, recipe: PruneRecipe, referenceBlocks: number, servingTarget: ExecutionTarget = cpuTarget, limits: InputFileLimits = {}): Promise<PruneStoreKey> {
  const material: Record<string, unknown> = { ...recipe, referenceBlocks };
  if (recipe.budget === 'latency') material.latencyTarget = describeTarget(servingTarget);
  // Sampled text added to the files' (the default since 2026-12-07): the same recipe values meant
  // the files alone before, so entries made then must not answer for it.
  if (samplesRecoveryText(recipe) && recipe.recoveryData !== SELF_RECOVERY_DATA) material.recoverySelfAdded = recipe.recoverySelfTokens;
  for (const o of pruneOptions) {
    if (o.type.kind !== 'text') continue;
    const set = recipe[o.key] as string | undefined;
    // Not a file (recovery data `self`): the value itself is the material.
    if (set !== undefined && !namesFile(o, set)) continue;
    const paths = set !== undefined ? [set] : (defaultFiles[o.key]?.() ?? []);
    const digests = await Promise.all(paths.map((p) => digestInputFile(o, p, limits)));
    material[o.key] = digests.length === 0 ? undefined : { sha256: digests.length === 1 ? digests[0]! : digests };
  }
  const entryRecipe = material as EntryRecipe;
  return { key: storeKey(sourceDigest, entryRecipe), sourceDigest, recipe: entryRecipe };
}

/** The recipe fields of a prune job request (where the result goes is not part of what it is). */
export function recipeOf<R extends PruneRecipe>(request: R & { source?: unknown; id?: unknown; activate?: unknown }): PruneRecipe {
  const { source: _s, id: _i, activate: _a, ...recipe } = request;
  return recipe as PruneRecipe;
}
