import type { ModelSpec } from '../runtime/model/spec.ts';
import { loraSites, loraTargets } from '../runtime/train/lora.ts';
import { recover, type RecoveryData, type RecoveryKind, type RecoveryOptions } from '../runtime/train/recover.ts';
import type { TrainProgress } from '../runtime/train/train-loop.ts';
import type { RecoveryTextDescription } from './recovery-data.ts';
import type { ModelWeights } from './surgery.ts';

/**
 * Recovery inside MoP, as the paper runs it: every candidate (depth and width) is fine-tuned for a
 * few steps before the path criterion scores it, and the final model gets a longer run. Both use
 * one recipe; only the step counts differ. The baselines run the same code with one candidate per
 * step, so every model's lineage gets the same recovery: `candidateSteps` per step plus `finalSteps`.
 */
export const recoveryModes = ['none', 'lora', 'full'] as const;
export type RecoveryMode = (typeof recoveryModes)[number];

export interface MopRecoveryOptions {
  /** Everything but the step count, which is set per run. Unset fields: defaultRecoveryOptions. */
  recipe: Partial<Omit<RecoveryOptions, 'steps'>> & { kind: RecoveryKind };
  /** Steps of each candidate's brief recovery (0 = score candidates as cut, like MoP without recovery). */
  candidateSteps: number;
  /** Steps of the recovery after the target is reached (0 = none). */
  finalSteps: number;
  /** A wall-clock budget (seconds of training) per candidate instead of candidateSteps. */
  candidateTimeLimit?: number;
  /** A wall-clock budget for the final recovery instead of finalSteps. */
  finalTimeLimit?: number;
  /** Recovery windows and the distillation teacher (the model being pruned). */
  data: RecoveryData;
  description?: RecoveryTextDescription;
}

/** One recovery run, for the report (the loss curve itself is left out: it can be thousands of numbers). */
export interface RecoveryRunRecord {
  steps: number;
  updates: number;
  stopped: 'completed' | 'non-finite';
  nonFiniteStep?: number;
  /** Mean training loss of the first and of the last min(10, steps) steps. */
  trainLossFirst: number;
  trainLossLast: number;
  /** Seconds of the training loop, and of the whole run (graph and session builds included). */
  seconds: number;
  wallSeconds: number;
  tokensPerSecond: number;
  /** The LoRA rank used, when the narrowest projection of this model forced a smaller one than asked. */
  loraRank?: number;
}

/** What MopProgress carries while a recovery runs. */
export interface RecoveryProgress {
  phase: 'candidate' | 'final';
  branch?: 'depth' | 'width';
  step: number;
  steps: number;
  loss: number;
  tokensPerSecond: number;
  etaSeconds: number;
}

/** The narrowest projection LoRA would adapt: a rank above it is clamped (a pruned layer can be narrower than asked). */
function loraRankFor(spec: ModelSpec, recipe: MopRecoveryOptions['recipe']): number | undefined {
  if (recipe.kind !== 'lora' || recipe.loraRank === undefined) return undefined;
  const sites = loraSites(spec, recipe.loraTargets ?? loraTargets);
  const narrowest = Math.min(...sites.map((s) => Math.min(s.out, s.in)));
  return recipe.loraRank > narrowest ? narrowest : undefined;
}

/** How long one run trains: optimizer steps, or seconds of training (then steps is only a cap). */
export type RecoveryBudget = { steps: number } | { seconds: number };

/** The budget of the candidate runs or of the final run. */
export function recoveryBudget(o: MopRecoveryOptions, phase: 'candidate' | 'final'): RecoveryBudget {
  const seconds = phase === 'candidate' ? o.candidateTimeLimit : o.finalTimeLimit;
  return seconds !== undefined ? { seconds } : { steps: phase === 'candidate' ? o.candidateSteps : o.finalSteps };
}

/** Whether a budget trains at all. */
export function budgetTrains(b: RecoveryBudget): boolean {
  return 'seconds' in b ? b.seconds > 0 : b.steps > 0;
}

/** The step cap of a time budget (the loop stops on time long before). */
const TIME_BUDGET_STEP_CAP = 1_000_000;

export async function runRecovery(
  model: ModelWeights,
  o: MopRecoveryOptions,
  budget: RecoveryBudget,
  hooks: { signal?: AbortSignal | undefined; onProgress?: ((p: TrainProgress) => void) | undefined },
): Promise<{ model: ModelWeights; record: RecoveryRunRecord }> {
  const clamped = loraRankFor(model.spec, o.recipe);
  const steps = 'seconds' in budget ? TIME_BUDGET_STEP_CAP : budget.steps;
  const recipe: Partial<RecoveryOptions> = {
    ...o.recipe,
    steps,
    ...('seconds' in budget && { seconds: budget.seconds }),
    // A brief run gets a proportionally brief warm-up (the default recipe: 20 of 300).
    warmup: o.recipe.warmup ?? Math.round(steps / 15),
    ...(clamped !== undefined && { loraRank: clamped }),
  };
  const t0 = performance.now();
  const r = await recover(model, recipe, o.data, { ...(hooks.signal && { signal: hooks.signal }), ...(hooks.onProgress && { onProgress: hooks.onProgress }) });
  const rep = r.report;
  return {
    model: { spec: r.spec, weights: r.weights },
    record: {
      steps: 'seconds' in budget ? rep.losses.length : steps,
      updates: rep.updates,
      stopped: rep.stopped,
      ...(rep.nonFiniteStep !== undefined && { nonFiniteStep: rep.nonFiniteStep }),
      trainLossFirst: rep.firstLoss,
      trainLossLast: rep.finalLoss,
      seconds: rep.seconds,
      wallSeconds: (performance.now() - t0) / 1000,
      tokensPerSecond: rep.tokensPerSecond,
      ...(clamped !== undefined && { loraRank: clamped }),
    },
  };
}
