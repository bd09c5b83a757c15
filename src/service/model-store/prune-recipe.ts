/**
 * Turning a prune request into its recipe. The server's admin route, its start-up prune and
 * `mop prune` into a store (the Helm hook) must compute the same key for the same work, so every
 * setting is made explicit here: an option left unset and the same option set to MoP's default
 * give one recipe, and the ratio's reference (referenceBlocks) is always a number.
 */
import { defaultCalibrationPath } from '../../mop/calibration.ts';
import { type ModelSpec, parameterCounts } from '../../runtime/model/spec.ts';
import type { JsonValue } from './canonical-json.ts';
import { digestFile } from './digest.ts';
import type { PruneRecipe } from './store-key.ts';

/** A prune request as the server and `mop prune` take it; unset means MoP's default. */
export interface PruneSettings {
  target: number;
  strategy?: string;
  criterion?: string;
  samples: number;
  seqLen: number;
  seed: number;
  /** Calibration text file; default: the bundled TinyStories slice. */
  calibrationPath?: string;
  importance?: string;
  stepLayers?: number;
  depthUnit?: string;
  widthSplit?: string;
  widthNormalize?: string;
  /** Block parameters the ratio is measured against; default: the source's own (a dense source). */
  referenceBlocks?: number;
  /** Recovery recipe, when pruning is followed by one; default none. */
  recovery?: JsonValue;
}

/**
 * runMop's defaults (src/mop/mop.ts), spelled out so that unset and default settings hash alike.
 * A test compares them with what runMop records in its report.
 */
export const MOP_DEFAULTS = {
  strategy: 'mop',
  criterion: 'ppl',
  importance: 'amp',
  stepLayers: 1,
  depthUnit: 'layer',
  widthSplit: 'param-share',
  widthNormalize: 'layer',
} as const;

/** The full recipe of pruning `source` with `settings` (reads the calibration file to digest it). */
export async function pruneRecipe(settings: PruneSettings, source: ModelSpec): Promise<PruneRecipe> {
  return {
    strategy: settings.strategy ?? MOP_DEFAULTS.strategy,
    criterion: settings.criterion ?? MOP_DEFAULTS.criterion,
    target: settings.target,
    calibrationDigest: await digestFile(settings.calibrationPath ?? defaultCalibrationPath()),
    samples: settings.samples,
    seqLen: settings.seqLen,
    seed: settings.seed,
    recovery: settings.recovery ?? null,
    options: {
      importance: settings.importance ?? MOP_DEFAULTS.importance,
      stepLayers: settings.stepLayers ?? MOP_DEFAULTS.stepLayers,
      depthUnit: settings.depthUnit ?? MOP_DEFAULTS.depthUnit,
      widthSplit: settings.widthSplit ?? MOP_DEFAULTS.widthSplit,
      widthNormalize: settings.widthNormalize ?? MOP_DEFAULTS.widthNormalize,
      referenceBlocks: settings.referenceBlocks ?? parameterCounts(source).blocks,
    },
  };
}
