/**
 * The one prune function: calibration text → MoP (or a baseline) → pruned model and report.
 * `mop prune` calls it in its own process; the server calls it inside a prune worker thread.
 */
import { type CalibrationDescription, loadCalibration } from '../../mop/calibration.ts';
import { type MopProgress, type MopResult, runMop, validateMopOptions } from '../../mop/mop.ts';
import type { DeviceName } from '../../runtime/device/device.ts';
import type { LoadedModel } from '../../runtime/model/loaded-model.ts';
import { checkTokenizerMatchesModel, createTokenizer } from '../../runtime/tokenizer/create.ts';
import type { PruneRecipe } from './prune-options.ts';

export interface PruneRun {
  model: Pick<LoadedModel, 'spec' | 'weights' | 'tokenizer' | 'path'>;
  recipe: PruneRecipe;
  /** Block parameters the ratio is measured against (the dense model's, when pruning a pruned one). */
  referenceBlocks?: number;
  threads?: number;
  device?: DeviceName;
  signal?: AbortSignal;
  /** The calibration text was read and cut: the recipe's inputs are good. */
  onCalibrated?: (c: CalibrationDescription) => void;
  onProgress?: (p: MopProgress) => void;
}

/** Checks that need neither the model nor the calibration file (fail before loading anything). */
export function validateRecipe(recipe: PruneRecipe): void {
  validateMopOptions(recipe);
}

export async function runPrune(run: PruneRun): Promise<MopResult> {
  const { recipe, model } = run;
  validateRecipe(recipe);
  const tokenizer = createTokenizer(model.tokenizer);
  checkTokenizerMatchesModel(tokenizer, model.spec.vocabSize, model.path);
  const calibration = await loadCalibration(tokenizer, {
    ...(recipe.calibration !== undefined && { path: recipe.calibration }),
    samples: recipe.samples,
    seqLen: recipe.seqLen,
    seed: recipe.seed,
  });
  run.onCalibrated?.(calibration.description);
  return runMop(
    { spec: model.spec, weights: model.weights },
    {
      target: recipe.target,
      strategy: recipe.strategy,
      criterion: recipe.criterion,
      importance: recipe.importance,
      stepLayers: recipe.stepLayers,
      depthUnit: recipe.depthUnit,
      widthSplit: recipe.widthSplit,
      widthNormalize: recipe.widthNormalize,
      calibration,
      seed: recipe.seed,
      modelPath: model.path,
      ...(run.referenceBlocks !== undefined && { referenceBlocks: run.referenceBlocks }),
      ...(run.threads !== undefined && { threads: run.threads }),
      ...(run.device !== undefined && { device: run.device }),
      ...(run.signal && { signal: run.signal }),
      ...(run.onProgress && { onProgress: run.onProgress }),
    },
  );
}
