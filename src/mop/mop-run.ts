import type { ForwardTaps, MaskedForward } from '../runtime/calibration/masked-forward.ts';
import { toBatches } from '../runtime/calibration/token-batch.ts';
import { defaultRecoveryOptions } from '../runtime/train/recover.ts';
import { type Candidate, depthCandidate, smallestUnitParams, widthCandidate } from './candidates.ts';
import { thirdToLastScores } from './depth-rule.ts';
import { MopInputError } from './errors.ts';
import type { ImportanceInputs } from './importance.ts';
import { type MopProgress, type MopSettings, TARGET_TOLERANCE } from './mop-options.ts';
import { type RecoveryProgress, recoveryBudget, type RecoveryRunRecord, budgetTrains, runRecovery } from './mop-recovery.ts';
import { fullPlan, type PruningPlan, survivingLayers } from './pruning-plan.ts';
import type { CandidateRecord, PruneRecoveryReport, StepRecord } from './report.ts';
import { CandidateScorer } from './selection.ts';
import { applyPlan, type ModelWeights, scatterPlan } from './surgery.ts';
import { smallestUniformSlice, uniformWidthCandidate } from './uniform-width.ts';

/** The scores a step's candidates are built from. */
interface StepScores {
  inputs: ImportanceInputs;
  kvScores: (Float64Array | null)[];
  neuronScores: (Float64Array | null)[];
}

/** Where one step stands: its budget and what is left to remove, in the cost's unit. */
interface StepBudget {
  blocks: number;
  remaining: number;
  budget: number;
  /** The smallest structure left. */
  unit: number;
}

/** The pruned model at the target, scored, after the final recovery when there is one. */
export interface MopOutcome {
  model: ModelWeights;
  /** The ratio in the budget's unit, and in block parameters. */
  budgetRatio: number;
  ratio: number;
  finalScore: number;
  finalScoreBeforeRecovery?: number;
  recovery?: PruneRecoveryReport;
}

/**
 * One MoP run in progress: the plan so far, the model it masks (the input, or its recovered
 * weights in base shape), the scoring session over it, and the steps taken.
 */
export class MopRun {
  plan: PruningPlan;
  /** The current model's weights in base shape: the input's, or the recovered ones. */
  current: ModelWeights;
  readonly steps: StepRecord[] = [];
  candidateSeconds = 0;
  private readonly scorer: CandidateScorer;

  constructor(
    private readonly s: MopSettings,
    input: ModelWeights,
    public forward: MaskedForward,
  ) {
    this.current = input;
    this.scorer = new CandidateScorer(forward, toBatches(s.options.calibration.sequences), s.criterion);
    this.plan = fullPlan(s.base);
  }

  /** The first pass: the references the criterion scores against. */
  async start(): Promise<void> {
    this.s.options.signal?.throwIfAborted();
    await this.scorer.init(this.plan);
  }

  /** One step: score the current model, build and score the candidates, commit the winner. False once done. */
  async step(): Promise<boolean> {
    const { s } = this;
    const blocks = s.costOf(this.plan);
    const remaining = blocks - s.targetBlocks;
    const unit = this.smallestUnit();
    // Done once no structure left would bring the count closer to the target.
    if (remaining <= unit / 2) return false;
    const alive = survivingLayers(this.plan).length;
    const b: StepBudget = { blocks, remaining, budget: Math.min((s.stepLayers * blocks) / alive, remaining), unit };
    const t0 = performance.now();
    this.progress(`step ${this.steps.length + 1}: scoring the current model (${(100 * s.ratioOf(blocks)).toFixed(1)}%)`, remaining, b.budget);

    const parent = await this.scorer.parent(this.plan, s.options.signal);
    const scores = this.importanceScores(parent.taps);
    const candidates = this.candidates(scores, b);
    if (candidates.length === 0) return false;
    const { records, recovered } = await this.scoreCandidates(candidates, parent.score, b);
    const chosen = await this.commit(candidates, records, recovered, scores, b);
    const after = blocks - chosen.removedParams;
    this.steps.push({
      step: this.steps.length + 1,
      budget: Math.round(b.budget),
      parent: { blocks, ratio: s.ratioOf(blocks), score: parent.score },
      candidates: records,
      chosen: chosen.branch,
      committedParams: chosen.removedParams,
      blocks: after,
      ratio: s.ratioOf(after),
      wallMs: performance.now() - t0,
    });
    this.progress(`step ${this.steps.length}: took ${chosen.branch} → ${(100 * s.ratioOf(after)).toFixed(1)}%`, after - s.targetBlocks, b.budget);
    if (this.steps.length > 10_000) throw new Error('MoP did not converge (more than 10000 steps)');
    return true;
  }

  /**
   * The width candidate of the current plan worth about `budget` (per-layer or, with --uniform, in
   * slices across all layers). In the step meant to finish, per-layer units land on the target.
   */
  private widthCandidate(kvScores: StepScores['kvScores'], neuronScores: StepScores['neuronScores'], budget: number, step: StepBudget): Candidate | null {
    const { s } = this;
    if (s.policy.uniform) return uniformWidthCandidate(s.base, this.plan, kvScores, neuronScores, budget, s.policy, s.cost);
    // A margin under the tolerance, for the target's rounding to whole cost units.
    const landing = step.budget >= step.remaining ? { remaining: step.remaining, tolerance: 0.9 * TARGET_TOLERANCE * s.reference } : undefined;
    return widthCandidate(s.base, this.plan, kvScores, neuronScores, budget, s.policy, s.cost, landing);
  }

  /** The smallest structure (with --uniform: slice) still in the plan. */
  private smallestUnit(): number {
    const { s } = this;
    return (s.policy.uniform ? smallestUniformSlice : smallestUnitParams)(s.base, this.plan, s.cost, s.widthMultiple);
  }

  private importanceScores(taps: ForwardTaps): StepScores {
    const inputs = { spec: this.s.base, weights: this.current.weights, taps };
    return { inputs, kvScores: this.s.importance.kvGroupScores(inputs), neuronScores: this.s.importance.neuronScores(inputs) };
  }

  /** The step's depth and width candidates (one of them for the baselines). */
  private candidates({ inputs, kvScores, neuronScores }: StepScores, step: StepBudget): Candidate[] {
    const { budget, remaining, unit } = step;
    const { s, plan } = this;
    const depth =
      s.strategy === 'width'
        ? null
        : depthCandidate(
            s.base,
            plan,
            s.depthRule === 'third-to-last' ? thirdToLastScores(plan) : { layer: s.importance.layerScores(inputs), ...s.importance.subBlockScores(inputs) },
            budget,
            remaining + unit / 2,
            s.depthUnit,
            s.cost,
          );
    // The width candidate removes what the depth candidate removes, so the two compare at
    // equal size; without a depth candidate it removes the step budget.
    const compareBudget = depth ? depth.removedParams : budget;
    const width = s.strategy === 'depth' && depth ? null : this.widthCandidate(kvScores, neuronScores, compareBudget, step);
    return [depth, width].filter((c): c is Candidate => c !== null);
  }

  /** Each candidate's score (after its brief recovery, with candidate recovery) and record. */
  private async scoreCandidates(candidates: Candidate[], parentScore: number, { blocks, remaining, budget }: StepBudget): Promise<{ records: CandidateRecord[]; recovered: ModelWeights[] }> {
    const { s } = this;
    const records: CandidateRecord[] = [];
    const recovered: ModelWeights[] = [];
    for (const c of candidates) {
      this.progress(`step ${this.steps.length + 1}: scoring the ${c.branch} candidate`, remaining, budget);
      let score = await this.scorer.candidate(c.plan, s.options.signal);
      let recoveryRecord: (RecoveryRunRecord & { scoreBefore: number }) | undefined;
      if (s.candidateRecovery) {
        const what = `step ${this.steps.length + 1}: ${c.branch} candidate`;
        const run = await runRecovery(applyPlan(this.current, c.plan), s.recovery!, recoveryBudget(s.recovery!, 'candidate'), this.recoveryHooks('candidate', c.branch, this.progressOf(what, remaining, budget)));
        this.candidateSeconds += run.record.wallSeconds;
        recovered.push(run.model);
        const before = score;
        score = await this.scoreOther(run.model);
        recoveryRecord = { scoreBefore: before, ...run.record };
      }
      const after = blocks - c.removedParams;
      const costPer1kParams = ((score - parentScore) / c.removedParams) * 1000;
      records.push({ branch: c.branch, removedParams: c.removedParams, blocks: after, ratio: s.ratioOf(after), score, costPer1kParams, removed: c.removed, ...(recoveryRecord && { recovery: recoveryRecord }) });
    }
    return { records, recovered };
  }

  /**
   * The candidate that loses least per removed parameter wins: at equal size simply the lower
   * score (sizes differ by rounding only). A tie goes to depth, which also saves per-token work.
   * 'random' flips the seeded coin instead. Commits it; returns what was committed.
   */
  private async commit(candidates: Candidate[], records: CandidateRecord[], recovered: ModelWeights[], { kvScores, neuronScores }: StepScores, step: StepBudget): Promise<Candidate> {
    const { budget, unit } = step;
    const { s } = this;
    const best = s.criterion === 'random' ? records[Math.floor(s.coin.nextFloat() * records.length)]! : records.reduce((a, b) => (b.costPer1kParams < a.costPer1kParams ? b : a));
    const winner = records.indexOf(best);
    let chosen = candidates[winner]!;
    if (s.candidateRecovery) {
      // The next step starts from the recovered winner (a width winner trimmed to the step
      // budget below keeps the few extra structures at their current weights).
      this.current = { spec: s.base, weights: scatterPlan(this.current, chosen.plan, recovered[winner]!) };
      await this.forward.release();
      this.forward = await s.open(this.current);
      this.scorer.replaceForward(this.forward);
    }
    // A step budget under the compared size: a winning width branch commits only its least
    // important step's worth, then the next step compares again.
    if (chosen.branch === 'width' && chosen.removedParams > budget + unit / 2) chosen = this.widthCandidate(kvScores, neuronScores, budget, step) ?? chosen;
    this.plan = chosen.plan;
    return chosen;
  }

  /** The model at the target (a MopInputError where the structures left are too coarse to land on it), scored and recovered. */
  async finish(): Promise<MopOutcome> {
    const { s, plan } = this;
    const budgetRatio = s.ratioOf(s.costOf(plan));
    const ratio = s.paramRatioOf(plan);
    if (Math.abs(budgetRatio - s.options.target) > TARGET_TOLERANCE) {
      const coarse = s.widthMultiple > 1 ? `; a smaller --width-multiple than ${s.widthMultiple} gives finer steps` : '';
      throw new MopInputError(
        `cannot reach ${(100 * s.options.target).toFixed(1)}% within ±${100 * TARGET_TOLERANCE} points with ${s.strategy} pruning: stopped at ${(100 * budgetRatio).toFixed(2)}% (the remaining structures are too coarse${coarse})`,
      );
    }
    const finalScore = (await this.scorer.parent(plan, s.options.signal)).score;
    const model = applyPlan(this.current, plan);
    const outcome: MopOutcome = { model, budgetRatio, ratio, finalScore };
    return s.recovery ? this.finalRecovery(outcome) : outcome;
  }

  /** The longer recovery after the target, and the recovery section of the report. */
  private async finalRecovery(outcome: MopOutcome): Promise<MopOutcome> {
    const recovery = this.s.recovery!;
    let final: RecoveryRunRecord | undefined;
    if (budgetTrains(recoveryBudget(recovery, 'final'))) {
      const progress = { step: this.steps.length, totalEstimate: this.steps.length, ratio: outcome.ratio, message: 'final recovery' };
      const run = await runRecovery(outcome.model, recovery, recoveryBudget(recovery, 'final'), this.recoveryHooks('final', undefined, progress));
      final = run.record;
      outcome = { ...outcome, model: run.model, finalScoreBeforeRecovery: outcome.finalScore, finalScore: await this.scoreOther(run.model) };
    }
    const { steps: _steps, ...recipe } = { ...defaultRecoveryOptions, ...recovery.recipe };
    const finalSeconds = final?.wallSeconds ?? 0;
    outcome.recovery = {
      recipe,
      candidateSteps: recovery.candidateSteps,
      finalSteps: recovery.finalSteps,
      ...(recovery.candidateTimeLimit !== undefined && { candidateTimeLimit: recovery.candidateTimeLimit }),
      ...(recovery.finalTimeLimit !== undefined && { finalTimeLimit: recovery.finalTimeLimit }),
      ...(recovery.description && { data: recovery.description }),
      candidateSeconds: this.candidateSeconds,
      finalSeconds,
      seconds: this.candidateSeconds + finalSeconds,
      ...(final && { final }),
    };
    return outcome;
  }

  /** A recovered model's score against the run's references, on a session of its own. */
  private async scoreOther(model: ModelWeights): Promise<number> {
    const f = await this.s.open(model);
    try {
      return await this.scorer.other(f, fullPlan(model.spec), this.s.options.signal);
    } finally {
      await f.release();
    }
  }

  progressOf(message: string, remaining: number, stepBudget: number): MopProgress {
    const { s, plan } = this;
    return {
      step: this.steps.length,
      totalEstimate: this.steps.length + Math.max(0, Math.ceil((remaining - this.smallestUnit() / 2) / Math.max(stepBudget, 1))),
      ratio: s.paramRatioOf(plan),
      message,
    };
  }

  private progress(message: string, remaining: number, stepBudget: number): void {
    this.s.options.onProgress?.(this.progressOf(message, remaining, stepBudget));
  }

  private recoveryHooks(phase: RecoveryProgress['phase'], branch: RecoveryProgress['branch'], base: Omit<MopProgress, 'recovery'>) {
    const { onProgress, signal } = this.s.options;
    return {
      signal,
      onProgress: (t: { step: number; steps: number; loss: number; tokensPerSecond: number; etaSeconds: number }) =>
        onProgress?.({
          ...base,
          message: `${base.message}: recovery ${t.step}/${t.steps}, loss ${t.loss.toFixed(3)}, ${Math.round(t.tokensPerSecond)} tok/s, ETA ${Math.round(t.etaSeconds)} s`,
          recovery: { phase, ...(branch && { branch }), step: t.step, steps: t.steps, loss: t.loss, tokensPerSecond: t.tokensPerSecond, etaSeconds: t.etaSeconds },
        }),
    };
  }
}
