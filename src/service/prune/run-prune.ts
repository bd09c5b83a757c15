/**
 * The one prune function: calibration text → MoP (or a baseline) → pruned model and report.
 * `mop prune` calls it in its own process; the server calls it inside a prune worker thread.
 */
import { type CalibrationDescription, type CalibrationSet, loadCalibration } from '../../mop/calibration.ts';
import { MopInputError } from '../../mop/errors.ts';
import { type MopProgress, type MopResult, runMop, validateMopOptions } from '../../mop/mop.ts';
import { budgetTrains, type MopRecoveryOptions, type RecoveryBudget } from '../../mop/mop-recovery.ts';
import { joinRecoveryTexts, loadRecoveryText, type RecoveryText } from '../../mop/recovery-data.ts';
import { checkMemoryFits, type EstimateRecipe } from '../../mop/estimate.ts';
import { PruneEta } from './prune-eta.ts';
import os from 'node:os';
import { loadSelfRecoveryText, promptsFromCalibration, type SelfTextCache, type SelfTextOptions, selfTextRecipe } from '../../mop/self-text.ts';
import type { ModelSpec } from '../../runtime/model/spec.ts';
import type { ModelWeights } from '../../mop/surgery.ts';
import type { Tokenizer } from '../../runtime/tokenizer/types.ts';
import { defaultRecoveryOptions, type RecoveryOptions, trainingRowsPerRun, validateRecoveryOptions } from '../../runtime/train/recover.ts';
import { cpuTarget, type DeviceName, type ExecutionTarget } from '../../runtime/device/device.ts';
import { type LatencyProfile, measureLatencyProfile } from '../../mop/latency-profile.ts';
import type { LoadedModel } from '../../runtime/model/loaded-model.ts';
import { checkTokenizerMatchesModel, createTokenizer } from '../../runtime/tokenizer/create.ts';
import { type PruneRecipe, SELF_RECOVERY_DATA } from './prune-options.ts';

export interface PruneRun {
  /** The model to prune; its chat template renders chat records of calibration and recovery text. */
  model: Pick<LoadedModel, 'spec' | 'weights' | 'tokenizer' | 'path' | 'chatTemplate'>;
  recipe: PruneRecipe;
  /** Block parameters the ratio is measured against (the dense model's, when pruning a pruned one). */
  referenceBlocks?: number;
  threads?: number;
  device?: DeviceName;
  /**
   * Device and weight type the result will be served with: a latency budget measures the engine's
   * step-time profile in it (default CPU float32). Calibration passes run float32 on `device`.
   */
  servingTarget?: ExecutionTarget;
  signal?: AbortSignal;
  /** Bytes the prune may use at its peak (default: the machine's memory); a recipe that needs more is refused before it runs. */
  memoryLimit?: number;
  /** Where `--recovery-data self` text is kept between prunes (the model store); none: sampled each time. */
  selfTextCache?: SelfTextCache;
  /** The calibration and recovery texts were read and cut: the recipe's inputs are good. */
  onCalibrated?: (c: CalibrationDescription) => void;
  onProgress?: (p: MopProgress) => void;
}

/** Checks that need neither the model nor the calibration file (fail before loading anything). */
export function validateRecipe(recipe: PruneRecipe, spec?: ModelSpec): void {
  validateMopOptions(recipe);
  if (recipe.recoveryTokens !== undefined && recipe.recoverySeconds !== undefined) {
    throw new MopInputError('recovery-tokens and recovery-seconds are both set: give the candidates one budget (steps, tokens or seconds)');
  }
  if (recipe.finalRecoveryTokens !== undefined && recipe.finalRecoverySeconds !== undefined) {
    throw new MopInputError('final-recovery-tokens and final-recovery-seconds are both set: give the final recovery one budget (steps, tokens or seconds)');
  }
  const r = recoveryRecipe(recipe);
  if (!r) return;
  if (recipe.recoveryData === SELF_RECOVERY_DATA && recipe.recoverySelfTokens < MIN_SELF_TOKENS) {
    throw new MopInputError(`recovery-data self samples recovery-self-tokens tokens from the model: give at least ${MIN_SELF_TOKENS}, got ${recipe.recoverySelfTokens}`);
  }
  if (recipe.recoveryLossTokens === 'assistant' && (recipe.recoveryData === undefined || recipe.recoveryData === SELF_RECOVERY_DATA)) {
    throw new MopInputError(`recovery-loss-tokens assistant needs chat records: name a .jsonl file of {"messages": [...]} as recovery-data (${recipe.recoveryData ?? 'the bundled text'} has no assistant turns)`);
  }
  try {
    validateRecoveryOptions({ ...defaultRecoveryOptions, ...r, steps: Math.max(recipe.recoverySteps, recipe.finalRecoverySteps) }, spec);
  } catch (e) {
    // One error type for every bad prune input: the CLI's one line, the server's 400.
    if (e instanceof Error && e.name === 'RecoveryInputError') throw new MopInputError(e.message);
    throw e;
  }
}

/** The recovery recipe a prune recipe asks for (undefined: none, or no step to run). */
function recoveryRecipe(recipe: PruneRecipe): MopRecoveryOptions['recipe'] | undefined {
  const budgets = recoveryBudgets(recipe);
  if (recipe.recovery === 'none' || (!budgetTrains(budgets.candidate) && !budgetTrains(budgets.final))) return undefined;
  const r: Partial<RecoveryOptions> & { kind: 'lora' | 'full' } = {
    kind: recipe.recovery,
    lr: recipe.recoveryLr,
    loss: recipe.recoveryLoss,
    kdAlpha: recipe.recoveryKdAlpha,
    batch: recipe.recoveryBatch,
    seqLen: recipe.recoverySeqLen,
    loraRank: recipe.recoveryLoraRank,
    // LoRA's own scale follows its rank (α = 2r), the ratio the measured default used (r 8, α 16).
    loraAlpha: 2 * recipe.recoveryLoraRank,
    seed: recipe.seed,
  };
  return r;
}

/** Each phase's budget: seconds, else tokens as steps, else the steps option. */
export function recoveryBudgets(recipe: PruneRecipe): { candidate: RecoveryBudget; final: RecoveryBudget } {
  const perStep = recipe.recoveryBatch * recipe.recoverySeqLen;
  const budget = (seconds: number | undefined, tokens: number | undefined, steps: number): RecoveryBudget =>
    seconds !== undefined ? { seconds } : tokens !== undefined ? { steps: Math.ceil(tokens / perStep) } : { steps };
  return {
    candidate: budget(recipe.recoverySeconds, recipe.recoveryTokens, recipe.recoverySteps),
    final: budget(recipe.finalRecoverySeconds, recipe.finalRecoveryTokens, recipe.finalRecoverySteps),
  };
}

/** The memory a prune may use: `limit` when given, else the machine's. */
export function availableMemory(limit?: number): number {
  return limit ?? os.totalmem();
}

export function estimateRecipeOf(recipe: PruneRecipe): EstimateRecipe {
  const b = recoveryBudgets(recipe);
  return {
    target: recipe.target,
    strategy: recipe.strategy,
    stepLayers: recipe.stepLayers,
    samples: recipe.samples,
    seqLen: recipe.seqLen,
    recovery:
      recipe.recovery === 'none'
        ? undefined
        : {
            kind: recipe.recovery,
            loss: recipe.recoveryLoss,
            batch: recipe.recoveryBatch,
            seqLen: recipe.recoverySeqLen,
            candidateSteps: 'steps' in b.candidate ? b.candidate.steps : 0,
            finalSteps: 'steps' in b.final ? b.final.steps : 0,
            candidateSeconds: 'seconds' in b.candidate ? b.candidate.seconds : undefined,
            finalSeconds: 'seconds' in b.final ? b.final.seconds : undefined,
            loraRank: recipe.recoveryLoraRank,
            sampledTokens: samplesRecoveryText(recipe) ? recipe.recoverySelfTokens : 0,
          },
  };
}

export function rowsPerRunOf(spec: ModelSpec, recipe: PruneRecipe): number {
  return trainingRowsPerRun(spec, recipe.recoverySeqLen, recipe.recoveryBatch);
}

/** What reading recovery text needs besides the recipe. */
export interface RecoveryInputs {
  tokenizer: Tokenizer;
  model: ModelWeights & { chatTemplate?: string | undefined };
  threads?: number | undefined;
  /** Prompts for `self` text come from the calibration sequences. */
  calibration?: CalibrationSet;
  selfTextCache?: SelfTextCache | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: MopProgress) => void) | undefined;
}

/** Fewest tokens of `self` recovery text: a smaller sample repeats too often to help (docs/recovery-data-report.md). */
export const MIN_SELF_TOKENS = 1024;

/**
 * Whether a recipe's recovery text includes text sampled from the model: all of it (recovery-data
 * `self`), or added to the files' text (recovery-self-tokens > 0; not with assistant-only loss,
 * which trains on chat records' assistant turns alone).
 */
export function samplesRecoveryText(recipe: PruneRecipe): boolean {
  if (!recoveryRecipe(recipe)) return false;
  return recipe.recoveryData === SELF_RECOVERY_DATA || (recipe.recoverySelfTokens > 0 && recipe.recoveryLossTokens !== 'assistant');
}

/** The recipe's recovery files (the bundled text by default) read and cut; undefined when it trains on sampled text alone or has no recovery. */
export async function readRecoveryFiles(recipe: PruneRecipe, inputs: Pick<RecoveryInputs, 'tokenizer' | 'model'>): Promise<RecoveryText | undefined> {
  if (!recoveryRecipe(recipe) || recipe.recoveryData === SELF_RECOVERY_DATA) return undefined;
  return loadRecoveryText(inputs.tokenizer, {
    seqLen: recipe.recoverySeqLen,
    batch: recipe.recoveryBatch,
    ...(recipe.recoveryData !== undefined && { path: recipe.recoveryData }),
    chatTemplate: inputs.model.chatTemplate,
    assistantOnly: recipe.recoveryLossTokens === 'assistant',
  });
}

/**
 * MoP's recovery options for a recipe: the recovery text (the files, `files` when already read,
 * and the text sampled from the model when the recipe asks for it; MopInputError when a file is
 * missing, empty, malformed or too short), the model being pruned as the distillation teacher.
 * Undefined when the recipe asks for no recovery.
 */
export async function prepareRecovery(recipe: PruneRecipe, inputs: RecoveryInputs, files?: RecoveryText): Promise<MopRecoveryOptions | undefined> {
  const options = recoveryRecipe(recipe);
  if (!options) return undefined;
  const { tokenizer, model } = inputs;
  const budgets = recoveryBudgets(recipe);
  const read = files ?? (await readRecoveryFiles(recipe, inputs));
  const sampled = samplesRecoveryText(recipe)
    ? await loadSelfRecoveryText(model, tokenizer, {
        seqLen: recipe.recoverySeqLen,
        batch: recipe.recoveryBatch,
        ...selfTextOptionsOf(recipe, inputs.calibration),
        alone: read === undefined,
        cache: inputs.selfTextCache,
        ...(inputs.threads !== undefined && { threads: inputs.threads }),
        ...(inputs.signal && { signal: inputs.signal }),
        onProgress: (done, total) => inputs.onProgress?.({ step: 0, totalEstimate: 1, ratio: 0, message: `sampling recovery text from the model: ${done}/${total} tokens` }),
      })
    : undefined;
  const text = joinRecoveryTexts([read, sampled].filter((t): t is RecoveryText => t !== undefined));
  return {
    recipe: { ...options, ...(inputs.threads !== undefined && { threads: inputs.threads }) },
    candidateSteps: 'steps' in budgets.candidate ? budgets.candidate.steps : 0,
    finalSteps: 'steps' in budgets.final ? budgets.final.steps : 0,
    ...('seconds' in budgets.candidate && { candidateTimeLimit: budgets.candidate.seconds }),
    ...('seconds' in budgets.final && { finalTimeLimit: budgets.final.seconds }),
    // The model being pruned teaches its pruned candidates (distillation).
    data: { windows: text.windows, ...(text.trainMasks && { trainMasks: text.trainMasks }), teacher: { spec: model.spec, weights: model.weights } },
    description: text.description,
  };
}

/** What a recipe samples from the model (and its cache is keyed by, with the model): prompts from the calibration sequences, BOS alone without. */
function selfTextOptionsOf(recipe: PruneRecipe, calibration: CalibrationSet | undefined): Pick<SelfTextOptions, 'tokens' | 'seed' | 'prompts'> {
  return { tokens: recipe.recoverySelfTokens, seed: recipe.seed, prompts: promptsFromCalibration(calibration?.sequences ?? []) };
}

/** The recipe's calibration text, read as its prune reads it. */
function loadRecipeCalibration(recipe: PruneRecipe, tokenizer: Tokenizer, chatTemplate: string | undefined): Promise<CalibrationSet> {
  return loadCalibration(tokenizer, {
    ...(recipe.calibration !== undefined && { path: recipe.calibration }),
    chatTemplate,
    samples: recipe.samples,
    seqLen: recipe.seqLen,
    seed: recipe.seed,
  });
}

/** Whether `cache` already holds the text this recipe would sample from `model`: its prune then samples nothing. */
export async function sampledTextCached(model: ModelWeights & Pick<LoadedModel, 'tokenizer' | 'chatTemplate'>, recipe: PruneRecipe, cache: SelfTextCache): Promise<boolean> {
  if (!samplesRecoveryText(recipe)) return false;
  const calibration = await loadRecipeCalibration(recipe, createTokenizer(model.tokenizer), model.chatTemplate);
  return (await cache.load(selfTextRecipe(model, selfTextOptionsOf(recipe, calibration)))) !== undefined;
}

export async function runPrune(run: PruneRun): Promise<MopResult> {
  const { recipe, model } = run;
  validateRecipe(recipe, model.spec);
  checkMemoryFits(model.spec, estimateRecipeOf(recipe), availableMemory(run.memoryLimit), rowsPerRunOf(model.spec, recipe));
  const tokenizer = createTokenizer(model.tokenizer);
  checkTokenizerMatchesModel(tokenizer, model.spec.vocabSize, model.path);
  const calibration = await loadRecipeCalibration(recipe, tokenizer, model.chatTemplate);
  const inputs: RecoveryInputs = { tokenizer, model, threads: run.threads, calibration, selfTextCache: run.selfTextCache, signal: run.signal, onProgress: run.onProgress };
  // Files are read before the inputs count as good; text sampled from the model (minutes on a large one) after.
  const files = await readRecoveryFiles(recipe, inputs);
  run.onCalibrated?.(calibration.description);
  const recovery = await prepareRecovery(recipe, inputs, files);
  let latencyProfile: LatencyProfile | undefined;
  if (recipe.budget === 'latency') {
    const target = run.servingTarget ?? cpuTarget;
    run.onProgress?.({ step: 0, totalEstimate: 1, ratio: 0, message: `measuring the engine's decode-step profile (${target.weights ?? target.dtype}, ${target.device})` });
    latencyProfile = await measureLatencyProfile(model.spec, { target, ...(run.threads !== undefined && { threads: run.threads }) });
    run.signal?.throwIfAborted();
  }
  // The ETA's clock starts with MoP (after reading, sampling and profiling).
  const eta = new PruneEta(model.spec, estimateRecipeOf(recipe));
  const onProgress = run.onProgress && ((p: MopProgress) => run.onProgress!(eta.annotate(p)));
  return runMop(
    { spec: model.spec, weights: model.weights },
    {
      target: recipe.target,
      strategy: recipe.strategy,
      criterion: recipe.criterion,
      importance: recipe.importance,
      stepLayers: recipe.stepLayers,
      depthUnit: recipe.depthUnit,
      depthRule: recipe.depthRule,
      ...(recovery && { recovery }),
      widthSplit: recipe.widthSplit,
      widthNormalize: recipe.widthNormalize,
      widthMultiple: recipe.widthMultiple,
      ...(recipe.uniform && { uniform: true }),
      ...(latencyProfile && { latencyProfile }),
      calibration,
      seed: recipe.seed,
      modelPath: model.path,
      ...(run.referenceBlocks !== undefined && { referenceBlocks: run.referenceBlocks }),
      ...(run.threads !== undefined && { threads: run.threads }),
      ...(run.device !== undefined && { device: run.device }),
      ...(run.signal && { signal: run.signal }),
      ...(onProgress && { onProgress }),
    },
  );
}
