/**
 * Prune jobs: MoP run on a served variant while the server keeps serving, then the result is
 * registered as a new variant and (by default) made active in one assignment. Requests already
 * running finish on the variant they started on; new ones get the new variant. One job at a time:
 * pruning is the heaviest thing this process does, and two would only slow each other down.
 */
import { type CalibrationSet, loadCalibration } from '../mop/calibration.ts';
import { MopInputError } from '../mop/errors.ts';
import { runMop, validateMopOptions, type MopProgress } from '../mop/mop.ts';
import type { PruneReport, Strategy } from '../mop/report.ts';
import type { SelectionCriterion } from '../mop/selection.ts';
import type { LoadedModel } from '../runtime/model/loaded-model.ts';
import { parameterCounts } from '../runtime/model/spec.ts';
import type { AdminEvents } from './admin-events.ts';
import type { ServerMetrics } from './metrics.ts';
import type { ModelRegistry, ServedVariant } from './registry.ts';
import { createVariant, type SchedulingConfig, sessionLike } from './variant.ts';

export interface PruneJobRequest {
  target: number;
  strategy: Strategy;
  criterion: SelectionCriterion;
  samples: number;
  seqLen: number;
  seed: number;
  /** Calibration text file on the server; default: the bundled TinyStories slice. */
  calibration?: string;
  /** Variant to prune (default: the dense model the server started with). */
  source?: string;
  /** Id of the new variant (default: `<strategy>-<percent>`, made unique). */
  id?: string;
  /** Make the result the active variant when done (default true). */
  activate: boolean;
}

export type PruneJobStatus = 'running' | 'succeeded' | 'failed' | 'cancelled';

/** What the API shows of a job. */
export interface PruneJobView {
  id: string;
  status: PruneJobStatus;
  request: PruneJobRequest;
  createdAt: string;
  finishedAt: string | null;
  progress: MopProgress | null;
  /** The variant the job registered (when it succeeded). */
  variant: string | null;
  error: string | null;
  /** The full MoP report, when it succeeded (omitted from lists). */
  report?: PruneReport;
}

interface PruneJob {
  view: PruneJobView;
  abort: AbortController;
  started: number;
  done: Promise<void>;
}

export interface PruneJobsDeps {
  registry: ModelRegistry;
  events: AdminEvents;
  metrics: ServerMetrics;
  scheduling: SchedulingConfig;
  threads: number | undefined;
  log: (line: string) => void;
  /** The dense variant's id: default source, and the reference for compression ratios. */
  denseId: string;
}

/** A second prune while one runs, or cancelling a finished job: answered 409. */
export class PruneConflictError extends Error {
  override name = 'PruneConflictError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export class PruneJobs {
  private readonly jobs = new Map<string, PruneJob>();
  private running: PruneJob | undefined;
  private starting = false;
  private counter = 0;

  constructor(private readonly deps: PruneJobsDeps) {}

  /**
   * Validate, read the calibration text (so a missing or too short file is the caller's 400, not a
   * failed job) and start a job; throws MopInputError (400), PruneConflictError (409).
   */
  async start(request: PruneJobRequest): Promise<PruneJobView> {
    validateMopOptions(request);
    if (this.running) throw new PruneConflictError(`prune job ${this.running.view.id} is still running; wait for it or cancel it (DELETE /admin/prune/${this.running.view.id})`, 'prune_in_progress');
    const sourceId = request.source ?? this.deps.denseId;
    const source = this.deps.registry.get(sourceId);
    if (!source) throw new MopInputError(`no model variant '${sourceId}' to prune`);
    if (request.id !== undefined && this.deps.registry.has(request.id)) throw new PruneConflictError(`a model variant '${request.id}' already exists`, 'variant_exists');
    if (this.starting) throw new PruneConflictError('another prune job is being started', 'prune_in_progress');
    this.starting = true;
    let calibration: CalibrationSet;
    try {
      calibration = await loadCalibration(source.tokenizer, {
        ...(request.calibration !== undefined && { path: request.calibration }),
        samples: request.samples,
        seqLen: request.seqLen,
        seed: request.seed,
      });
    } finally {
      this.starting = false;
    }
    const id = `prune-${++this.counter}`;
    const view: PruneJobView = { id, status: 'running', request, createdAt: new Date().toISOString(), finishedAt: null, progress: null, variant: null, error: null };
    const job: PruneJob = { view, abort: new AbortController(), started: performance.now(), done: Promise.resolve() };
    this.jobs.set(id, job);
    this.running = job;
    job.done = this.run(job, source, calibration).finally(() => (this.running = undefined));
    this.publish(job);
    return this.summary(job);
  }

  get(id: string): PruneJobView | undefined {
    const job = this.jobs.get(id);
    return job && { ...job.view };
  }

  list(): PruneJobView[] {
    return [...this.jobs.values()].map((j) => this.summary(j));
  }

  /** Cancel a running job; a finished one cannot be (409). Resolves when it has stopped. */
  async cancel(id: string): Promise<PruneJobView | undefined> {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    if (job.view.status !== 'running') throw new PruneConflictError(`prune job ${id} already ${job.view.status}; only a running job can be cancelled`, 'job_finished');
    job.abort.abort();
    await job.done;
    return this.summary(job);
  }

  /** Cancel whatever runs (shutdown). */
  async close(): Promise<void> {
    if (this.running) {
      this.running.abort.abort();
      await this.running.done;
    }
  }

  /** Wait for the running job, if any (tests, start-up prune). */
  async idle(): Promise<void> {
    await this.running?.done;
  }

  private async run(job: PruneJob, source: ServedVariant, calibration: CalibrationSet): Promise<void> {
    const { request } = job.view;
    const { registry, log } = this.deps;
    const dense = registry.get(this.deps.denseId);
    try {
      log(`prune ${job.view.id}: ${request.strategy} to ${request.target} of ${source.id} (${request.samples}×${request.seqLen} calibration tokens, criterion ${request.criterion})`);
      let lastLogged = 0;
      const result = await runMop(
        { spec: source.model.spec, weights: source.model.weights },
        {
          target: request.target,
          strategy: request.strategy,
          criterion: request.criterion,
          calibration,
          seed: request.seed,
          modelPath: source.model.path,
          ...(dense && { referenceBlocks: parameterCounts(dense.model.spec).blocks }),
          ...(this.deps.threads !== undefined && { threads: this.deps.threads }),
          device: source.session.target.device,
          signal: job.abort.signal,
          onProgress: (p) => {
            job.view.progress = p;
            this.publish(job);
            if (performance.now() - lastLogged > 5000) {
              lastLogged = performance.now();
              log(`prune ${job.view.id}: step ${p.step}/${p.totalEstimate}, ratio ${p.ratio.toFixed(3)}: ${p.message}`);
            }
          },
        },
      );
      if (job.abort.signal.aborted) throw new DOMException('cancelled', 'AbortError');
      const variantId = request.id ?? this.uniqueId(`${request.strategy}-${Math.round(request.target * 100)}`);
      const model: LoadedModel = { ...source.model, spec: result.model.spec, weights: result.model.weights, path: `${source.model.path} → ${variantId}` };
      const session = await sessionLike(source.session, model, this.deps.threads);
      const variant = createVariant(
        { id: variantId, model, tokenizer: source.tokenizer, session, chatTemplate: source.chatTemplate, compressionRatio: result.report.result.ratio },
        this.deps.scheduling,
      );
      registry.add(variant);
      this.deps.events.publish({ type: 'model_added', id: variantId, compressionRatio: variant.compressionRatio, parameters: variant.parameters });
      for (const s of result.report.steps) this.deps.metrics.countPruneStep(request.strategy, s.chosen);
      job.view.report = result.report;
      job.view.variant = variantId;
      job.view.status = 'succeeded';
      log(`prune ${job.view.id}: done in ${((performance.now() - job.started) / 1000).toFixed(1)} s: variant '${variantId}', ratio ${result.report.result.ratio.toFixed(3)}, ${result.report.result.steps.depth} depth + ${result.report.result.steps.width} width steps`);
      if (request.activate) this.activate(variantId);
    } catch (e) {
      if (job.abort.signal.aborted) {
        job.view.status = 'cancelled';
        log(`prune ${job.view.id}: cancelled`);
      } else {
        job.view.status = 'failed';
        job.view.error = e instanceof Error ? e.message : String(e);
        log(`prune ${job.view.id}: failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      }
    } finally {
      job.view.finishedAt = new Date().toISOString();
      this.deps.metrics.observePruneJob(request.strategy, job.view.status, (performance.now() - job.started) / 1000);
      this.publish(job);
    }
  }

  /** Make a variant the one new requests get; requests in flight keep theirs. */
  activate(id: string): void {
    const previous = this.deps.registry.active?.id;
    this.deps.registry.setActive(id);
    this.deps.log(`active model: '${id}' (was '${previous}')`);
    this.deps.events.publish({ type: 'active_changed', active: id, previous });
  }

  private uniqueId(base: string): string {
    let id = base;
    for (let k = 2; this.deps.registry.has(id); k++) id = `${base}-${k}`;
    return id;
  }

  private summary(job: PruneJob): PruneJobView {
    const { report: _report, ...rest } = job.view;
    return { ...rest };
  }

  private publish(job: PruneJob): void {
    this.deps.events.publish({ type: 'job', job: this.summary(job) });
  }
}
