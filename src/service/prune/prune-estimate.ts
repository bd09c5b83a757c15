/**
 * A prune recipe's cost before it runs (`mop prune --estimate`, POST /admin/prune with dry_run,
 * and the memory check of every prune): the recipe in the estimate's terms, the measured step
 * times, and the estimate in words.
 */
import { estimatePrune, type PathEstimate, type PruneEstimate } from '../../mop/estimate.ts';
import { measureStepTimes } from '../../mop/estimate-timing.ts';
import type { ModelWeights } from '../../mop/surgery.ts';
import type { DeviceName } from '../../runtime/device/device.ts';
import type { PruneRecipe } from './prune-options.ts';
import { availableMemory, estimateRecipeOf, rowsPerRunOf, sampledTextCached, validateRecipe } from './run-prune.ts';
import type { LoadedModel } from '../../runtime/model/loaded-model.ts';
import type { SelfTextCache } from '../../mop/self-text.ts';

/** An estimate with the memory it was checked against; `sampleCached`: the model store holds the recovery text the recipe samples, so none is sampled. */
export type PruneCostEstimate = PruneEstimate & { availableBytes: number; fits: boolean; sampleCached?: boolean };

/**
 * The recipe's cost on this machine: step times measured on the model's shape, then extrapolated.
 * With `selfTextCache` (the model store) and the model's tokenizer, text already sampled for this
 * recipe costs nothing: a re-prune at a new ratio samples nothing.
 */
export async function estimatePruneCost(
  model: ModelWeights & Partial<Pick<LoadedModel, 'tokenizer' | 'chatTemplate'>>,
  recipe: PruneRecipe,
  options: { threads?: number | undefined; device?: DeviceName | undefined; signal?: AbortSignal | undefined; memoryLimit?: number | undefined; selfTextCache?: SelfTextCache | undefined } = {},
): Promise<PruneCostEstimate> {
  validateRecipe(recipe, model.spec);
  const tokenizer = model.tokenizer;
  const sampleCached = options.selfTextCache !== undefined && tokenizer !== undefined && (await sampledTextCached({ ...model, tokenizer, chatTemplate: model.chatTemplate }, recipe, options.selfTextCache));
  const estimated = estimateRecipeOf(recipe);
  const r = sampleCached && estimated.recovery ? { ...estimated, recovery: { ...estimated.recovery, sampledTokens: 0 } } : estimated;
  const measured = await measureStepTimes(model, r, options);
  const e = estimatePrune(model.spec, r, measured, rowsPerRunOf(model.spec, recipe));
  const availableBytes = availableMemory(options.memoryLimit);
  return { ...e, availableBytes, fits: e.memory.peakBytes <= availableBytes, ...(sampleCached && { sampleCached }) };
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

function duration(s: number): string {
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** A figure per path MoP can take: `3 (depth-first) to 4 (width-first)`, or the one figure. */
function range(paths: readonly PathEstimate[], f: (p: PathEstimate) => string): string {
  if (paths.length === 1 || paths.every((p) => f(p) === f(paths[0]!))) return f(paths[0]!);
  return paths.map((p) => `${f(p)} (${p.path})`).join(' to ');
}

/** The estimate as lines for a terminal. */
export function describeEstimate(e: PruneCostEstimate): string {
  const m = e.memory;
  const lines = [
    `model: ${(e.parameters / 1e6).toFixed(2)}M parameters`,
    `MoP steps: ${range(e.paths, (p) => String(p.steps))}, candidates scored: ${range(e.paths, (p) => String(p.candidates))}`,
    `recovery training tokens: ~${Math.round(e.trainingTokens).toLocaleString('en-US')}`,
  ];
  if (e.seconds) {
    const s = e.seconds;
    const paths = e.paths.length > 1 ? `; ${range(e.paths, (p) => duration(p.seconds!.total))}` : '';
    const sampling = e.sampleCached ? ', no sampling (the model store holds the recovery text sampled for this recipe)' : s.sampling > 0 ? `, sampling recovery text ${duration(s.sampling)} (none when the model store holds the sample)` : '';
    lines.push(`predicted wall time: ${duration(s.total)} (candidate recovery ${duration(s.candidates)}, final recovery ${duration(s.final)}, scoring ${duration(s.scoring)}${sampling}${paths})`);
  }
  if (e.measured) {
    const t = e.measured;
    lines.push(`measured here: training step ${t.trainStepSeconds.toFixed(3)} s, recovery start ${t.recoveryStartSeconds.toFixed(2)} s, scoring pass ${t.scoringPassSeconds.toFixed(3)} s (with importance taps ${t.tapsPassSeconds.toFixed(3)} s), scoring session ${t.scoringOpenSeconds.toFixed(2)} s${t.sampleTokenSeconds !== undefined ? `, sampling ${(1 / t.sampleTokenSeconds).toFixed(0)} tokens/s` : ''}`);
  }
  lines.push(
    `peak memory: ~${gib(m.peakBytes)} (weights and copies ${gib(m.parts.weights)}, training state ${gib(m.parts.training)}, activations ${gib(m.parts.activations)}, teacher ${gib(m.parts.teacher)}) of ${gib(e.availableBytes)} available${e.fits ? '' : ': does NOT fit'}`,
  );
  return lines.join('\n');
}
