import type { ForwardTaps, MaskedForward } from '../runtime/calibration/masked-forward.ts';
import type { TokenBatch } from '../runtime/calibration/token-batch.ts';
import { batchCosine, batchKl, batchNll } from './evaluate.ts';
import type { PruningPlan } from './pruning-plan.ts';

/**
 * Selection criteria: how MoP compares its two candidates on the calibration set. Lower is better
 * for all of them.
 *   ppl:    perplexity of the candidate on the calibration sequences (default);
 *   kl:     mean KL(dense ‖ candidate) of next-token distributions;
 *   cosine: 1 − mean cosine of the candidate's final hidden states to its parent's (the rule of
 *           the authors' CNN predecessor: the candidate most similar to its parent wins);
 *   random: a seeded coin picks the candidate (the paper's control); candidates are still scored
 *           by perplexity for the report.
 */
export const selectionCriteria = ['ppl', 'kl', 'cosine', 'random'] as const;
export type SelectionCriterion = (typeof selectionCriteria)[number];

export function isSelectionCriterion(x: string): x is SelectionCriterion {
  return (selectionCriteria as readonly string[]).includes(x);
}

export interface PassResult {
  score: number;
  taps?: ForwardTaps;
}

/**
 * Runs calibration passes for one criterion. It keeps what the criterion compares against: the
 * dense model's logits (kl, computed once) or the parent's final hidden states (cosine, refreshed
 * by every parent pass).
 */
export class CandidateScorer {
  private denseLogits: Float32Array[] | undefined;
  private parentHidden: Float32Array[] | undefined;

  constructor(
    private forward: MaskedForward,
    private readonly batches: readonly TokenBatch[],
    readonly criterion: SelectionCriterion,
  ) {}

  /** Remember the dense model's outputs (call once, with the starting plan). */
  async init(densePlan: PruningPlan): Promise<void> {
    if (this.criterion !== 'kl') return;
    this.denseLogits = [];
    for (const b of this.batches) this.denseLogits.push((await this.forward.run(b, densePlan, { logits: true })).logits!.slice());
  }

  /** The current model: its taps (for importance scores) and its own score. */
  async parent(plan: PruningPlan, signal?: AbortSignal): Promise<Required<PassResult>> {
    const taps = this.forward.emptyTaps();
    const hidden: Float32Array[] = [];
    const score = await this.pass(plan, signal, taps, hidden);
    if (this.criterion === 'cosine') this.parentHidden = hidden;
    return { score, taps };
  }

  /** A candidate's score. */
  async candidate(plan: PruningPlan, signal?: AbortSignal): Promise<number> {
    return this.pass(plan, signal);
  }

  /**
   * The score of another model (a recovered candidate, cut to its shape) against the same
   * references: `plan` is a plan of `forward`'s model (usually all of it).
   */
  async other(forward: MaskedForward, plan: PruningPlan, signal?: AbortSignal): Promise<number> {
    return this.pass(plan, signal, undefined, undefined, forward);
  }

  /** Score later passes with another session (the current model's weights changed); the references stay. */
  replaceForward(forward: MaskedForward): void {
    this.forward = forward;
  }

  private async pass(plan: PruningPlan, signal: AbortSignal | undefined, taps?: ForwardTaps, keepHidden?: Float32Array[], forward = this.forward): Promise<number> {
    const spec = forward.spec;
    const needLogits = this.criterion !== 'cosine';
    const needHidden = this.criterion === 'cosine';
    let sum = 0;
    let count = 0;
    for (const [k, batch] of this.batches.entries()) {
      signal?.throwIfAborted();
      const out = await forward.run(batch, plan, { logits: needLogits, hidden: needHidden }, taps);
      const positions = batch.rows * batch.seqLen;
      if (this.criterion === 'ppl' || this.criterion === 'random') {
        const r = batchNll(out.logits!, batch, spec.vocabSize);
        sum += r.sum;
        count += r.count;
      } else if (this.criterion === 'kl') {
        sum += batchKl(this.denseLogits![k]!, out.logits!, positions, spec.vocabSize);
        count += positions;
      } else {
        if (keepHidden) keepHidden.push(out.hidden!.slice());
        // A parent pass compares against itself (score 0); it becomes the next reference.
        const ref = keepHidden ? undefined : this.parentHidden?.[k];
        sum += ref ? batchCosine(ref, out.hidden!, positions, spec.hidden) : positions;
        count += positions;
      }
    }
    const mean = sum / count;
    if (this.criterion === 'ppl' || this.criterion === 'random') return Math.exp(mean);
    if (this.criterion === 'kl') return mean;
    return 1 - mean;
  }
}
