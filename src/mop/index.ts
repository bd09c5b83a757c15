/**
 * The MoP pruning API, for the CLI and the server: calibrate, prune, write, evaluate.
 *
 *   const calibration = await loadCalibration(tokenizer, { samples: 32, seqLen: 128, seed: 0 });
 *   const { model, report } = await runMop(loaded, { target: 0.4, calibration, onProgress, signal });
 *   await writePrunedModel(dir, model, loaded, report);   // loadModel(dir) serves it
 */
export { type CalibrationSet, defaultCalibrationPath, defaultHeldoutPath, loadCalibration, calibrationFromText } from './calibration.ts';
export { MopInputError } from './errors.ts';
export { klDivergence, perplexity, textWindows } from './evaluate.ts';
export { writePrunedModel } from './export.ts';
export { ampImportance, type ImportanceCriterion, magnitudeImportance } from './importance.ts';
export { MAX_TARGET, type MopOptions, type MopProgress, type MopResult, runMop, strategies, TARGET_TOLERANCE, validateMopOptions } from './mop.ts';
export { type PruneReport, readReferenceBlocks, REPORT_FILE, type Strategy, summarizeReport } from './report.ts';
export { type SelectionCriterion, selectionCriteria } from './selection.ts';
export { applyPlan, type ModelWeights, removeKvGroups, removeLayer, removeNeurons } from './surgery.ts';
