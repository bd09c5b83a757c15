/**
 * The progress ETA of a prune (CLI bar, GET /admin/prune/{id}, /admin/events), from the same time
 * model as the estimate (src/mop/estimate.ts's plannedSchedule): the training step time comes from
 * the run's own recovery progress (normalised to the input model's size), the rest of each MoP
 * step (sessions, passes, surgery) from the steps already done, so the remaining steps and the
 * final recovery are extrapolated on this machine as it runs now.
 */
import { type EstimateRecipe, type MeasuredStepTimes, plannedPaths, plannedSchedule, stepTotal } from '../../mop/estimate.ts';
import type { MopProgress } from '../../mop/mop.ts';
import { type ModelSpec, parameterCounts } from '../../runtime/model/spec.ts';

export class PruneEta {
  private stepStarted: number;
  private stepsDone = 0;
  private observedStepSeconds = 0;
  private trainStepSeconds: number | undefined;
  private readonly embeddings: number;
  private readonly blocks: number;

  constructor(
    private readonly spec: ModelSpec,
    private readonly recipe: EstimateRecipe,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.stepStarted = now();
    const c = parameterCounts(spec);
    this.embeddings = c.embeddings;
    this.blocks = c.blocks;
  }

  /** `p` with `etaSeconds` when there is enough to go on (a first training step, or no recovery). */
  annotate(p: MopProgress): MopProgress {
    const t = this.now();
    if (p.step > this.stepsDone) {
      this.observedStepSeconds += (t - this.stepStarted) / 1000;
      this.stepsDone = p.step;
      this.stepStarted = t;
    }
    const r = p.recovery;
    if (r && r.tokensPerSecond > 0 && this.recipe.recovery) {
      // Tokens per second of this run, as a step of the input model's size.
      const size = (this.embeddings + this.blocks * (1 - p.ratio)) / (this.embeddings + this.blocks);
      this.trainStepSeconds = (this.recipe.recovery.batch * this.recipe.recovery.seqLen) / r.tokensPerSecond / size;
    }
    if (r?.phase === 'final') return { ...p, etaSeconds: r.etaSeconds };
    if (p.done) return { ...p, etaSeconds: 0 };
    const eta = this.remaining(t);
    return eta === undefined ? p : { ...p, etaSeconds: eta };
  }

  private remaining(t: number): number | undefined {
    if (this.recipe.recovery && this.trainStepSeconds === undefined) return undefined;
    const train = this.trainStepSeconds ?? 0;
    const m: MeasuredStepTimes = { trainStepSeconds: train, recoveryStartSeconds: 0, scoringPassSeconds: 0, tapsPassSeconds: 0, scoringOpenSeconds: 0 };
    // The shorter path MoP can take while the run has not outgrown it (estimate.ts's plannedPaths).
    // A run that has done all of a path's steps and goes on is in a step of the longer one.
    const paths = plannedPaths(this.spec, this.recipe);
    const plan = plannedSchedule(this.spec, this.recipe, m, paths.find((p) => p.steps > this.stepsDone) ?? paths.at(-1)!);
    const done = Math.min(this.stepsDone, plan.steps.length);
    // Without recovery the steps are all passes and sessions: known once one is done.
    if (done === 0 && !this.recipe.recovery) return undefined;
    // What the steps took beyond their training, per planned second: sessions, passes, surgery.
    const plannedDone = plan.steps.slice(0, done).reduce((n, s) => n + stepTotal(s), 0);
    const overhead = done > 0 ? Math.max(0, this.observedStepSeconds - plannedDone) / done : 0;
    const left = plan.steps.slice(done);
    const inStep = (t - this.stepStarted) / 1000;
    const steps = left.reduce((n, s) => n + stepTotal(s) + overhead, 0);
    return Math.max(0, steps - inStep) + plan.final;
  }
}
