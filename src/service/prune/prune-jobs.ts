/**
 * Prune jobs: MoP run in a prune worker on a served variant's weights while the server keeps
 * serving, then the result is started in its own engine worker, registered as a new variant and
 * (by default) made active in one assignment. Requests already running finish on the variant they
 * started on; new ones get the new variant. One job at a time: pruning is the heaviest thing this
 * process does, and two would only slow each other down.
 */
import { MopInputError } from '../../mop/errors.ts';
import type { PruneReport } from '../../mop/report.ts';
import type { ExecutionTarget } from '../../runtime/device/device.ts';
import { parameterCounts } from '../../runtime/model/spec.ts';
import type { LoadedModel } from '../../runtime/model/loaded-model.ts';
import type { EngineVariant } from '../variants/engine-variant.ts';
import type { HexDigest, StoredEntry } from '../model-store/index.ts';
import type { PruneJobRequest, PruneJobView } from './prune-job-view.ts';
import { estimateInWorker, type PrunedModel, type PruneWorkerHandle, startPruneWorker } from './prune-worker-client.ts';
import type { PruneCostEstimate } from './prune-estimate.ts';
import { checkInputFile, type InputFileLimits } from './prune-input-files.ts';
import { namesFile, pruneOptions } from './prune-options.ts';
import { type PruneStoreKey, pruneStoreKey, recipeOf } from './prune-store-key.ts';
import { validateRecipe } from './run-prune.ts';

/** What the jobs report to Prometheus (the server's metrics implement it). */
export interface PruneMetrics {
  observePruneJob(strategy: string, status: string, seconds: number): void;
  countPruneStep(strategy: string, branch: 'depth' | 'width'): void;
}

/** The served variants, as far as prune jobs need them. */
export interface PruneSources {
  get(id: string): EngineVariant | undefined;
  has(id: string): boolean;
}

export interface PruneJobsDeps {
  registry: PruneSources;
  /** Job progress and results, for the admin event socket. */
  publish(event: { type: 'job'; job: PruneJobView }): void;
  /** Read when a job ends (the server attaches its metrics after the service started). */
  metrics: () => PruneMetrics | undefined;
  log: (line: string) => void;
  /** The dense variant's id: default source, and the reference for compression ratios. */
  denseId: string;
  /** ONNX Runtime threads of the prune worker (serving keeps its own). */
  pruneThreads: number | undefined;
  /** JavaScript heap limit of the prune worker in MiB; undefined = Node's default. */
  pruneHeapMb: number | undefined;
  /** Nice value of the prune worker's threads (Linux): serving wins CPU contention. */
  pruneNice: number;
  /** Start a pruned model in an engine worker like `source`'s and register it. */
  addVariant(id: string, model: LoadedModel, source: EngineVariant, compressionRatio: number): Promise<EngineVariant>;
  activate(id: string): void;
  /** The model store, when the server has one (read per job: it is attached after start-up). */
  store?: () => PruneJobStore | undefined;
  /** How a prune worker is started (default: a worker thread). */
  startWorker?: typeof startPruneWorker;
  /** Finished jobs kept for GET /admin/prune (default DEFAULT_MAX_JOB_HISTORY); older ones are forgotten. */
  maxJobHistory?: number;
  /** How long the worker may take to read its inputs (default: calibratedTimeoutMs of the named files' size). */
  calibratedTimeoutMs?: number;
  /** Size and time bounds of the named input files (default: MAX_INPUT_FILE_BYTES, INPUT_READ_TIMEOUT_MS). */
  inputFiles?: Omit<InputFileLimits, 'signal'>;
}

/** The model store as prune jobs use it (store-sync/store-sync.ts implements it). */
export interface PruneJobStore {
  readonly root: string;
  /** What a prune of variant `id` starts from (its content digest); undefined: not storable. */
  sourceDigest(id: string): HexDigest | undefined;
  /** The served variant already holding entry `key`. */
  variantWithKey(key: HexDigest): string | undefined;
  /** A sound entry for `key` (cache hit) or undefined. */
  find(key: HexDigest): Promise<StoredEntry | undefined>;
  /** Read a stored checkpoint, off the main thread. */
  load(dir: string): Promise<{ model: LoadedModel; report: PruneReport | null }>;
  /** Record a variant now served from entry `key` in the manifest. */
  recordAdded(id: string, key: HexDigest, activate: boolean): Promise<void>;
}

/** The prune worker ended before it had read its inputs (out of memory, say): the server's fault, answered 500 with the reason. */
export class PruneWorkerError extends Error {
  override name = 'PruneWorkerError';
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

interface PruneJob {
  view: PruneJobView;
  worker: PruneWorkerHandle | undefined;
  /**
   * Its store key (with a store); `served`: a variant already serves that entry, `hit`: the entry
   * is in the store. Either way nothing is pruned.
   */
  stored: (PruneStoreKey & { served: string | undefined; hit: StoredEntry | undefined; store: PruneJobStore }) | undefined;
  cancelled: boolean;
  /** Aborted by a cancel: ends whatever the job awaits (file checks, hashing, the worker). */
  abort: AbortController;
  /** Rejects with an AbortError once the job is cancelled. */
  whenCancelled: Promise<never>;
  started: number;
  done: Promise<void>;
}

/** Finished jobs kept for GET /admin/prune when the server sets no limit. */
export const DEFAULT_MAX_JOB_HISTORY = 32;

/**
 * How long a prune worker may take to read and cut its calibration and recovery text before the
 * job fails: its start-up, plus tokenizing the files the request names, with room for a slow
 * core (src/service/README.md has the rate this is sized on).
 */
export function calibratedTimeoutMs(inputBytes: number): number {
  return 60_000 + 5_000 * Math.ceil(inputBytes / 2 ** 20);
}

/** What a job awaits while it starts; settled once it prunes, or once it ended before that. */
interface StartSignal {
  resolve(): void;
  reject(e: unknown): void;
}

export class PruneJobs {
  /** The running job and up to maxJobHistory finished ones, oldest first. */
  private readonly jobs = new Map<string, PruneJob>();
  private running: PruneJob | undefined;
  private closed = false;
  private counter = 0;

  constructor(private readonly deps: PruneJobsDeps) {}

  /** Finished jobs kept (older ones are forgotten). */
  get historyLimit(): number {
    return this.deps.maxJobHistory ?? DEFAULT_MAX_JOB_HISTORY;
  }

  /**
   * Validate, register the job (from here it is listed and can be cancelled), check its files,
   * start the worker and wait until it has read the calibration text, so a missing or too short
   * file is the caller's 400, not a failed job: a job refused so is not kept. Throws
   * MopInputError (400; PruneFileError names the field), PruneConflictError (409),
   * PruneWorkerError (500: the worker failed, or did not read its inputs in time). Resolves with
   * the job, running, or cancelled when a cancel came first.
   */
  async start(request: PruneJobRequest): Promise<PruneJobView> {
    validateRecipe(request);
    if (this.closed) throw new PruneConflictError('the server is shutting down; it starts no prune jobs', 'shutting_down');
    if (this.running) {
      const id = this.running.view.id;
      throw new PruneConflictError(`prune job ${id} is still running; wait for it or cancel it (DELETE /admin/prune/${id})`, 'prune_in_progress');
    }
    const sourceId = request.source ?? this.deps.denseId;
    const source = this.deps.registry.get(sourceId);
    if (!source) throw new MopInputError(`no model variant '${sourceId}' to prune`);
    if (request.id !== undefined && this.deps.registry.has(request.id)) throw new PruneConflictError(`a model variant '${request.id}' already exists`, 'variant_exists');
    const id = `prune-${++this.counter}`;
    const view: PruneJobView = { id, status: 'running', request, createdAt: new Date().toISOString(), finishedAt: null, progress: null, variant: null, error: null, storeKey: null, fromStore: false };
    const abort = new AbortController();
    const whenCancelled = new Promise<never>((_, reject) => abort.signal.addEventListener('abort', () => reject(new DOMException('cancelled', 'AbortError')), { once: true }));
    whenCancelled.catch(() => undefined);
    const job: PruneJob = { view, worker: undefined, stored: undefined, cancelled: false, abort, whenCancelled, started: performance.now(), done: Promise.resolve() };
    // Registered before the first await: the slot is taken, and the job can be seen and cancelled.
    this.jobs.set(id, job);
    this.running = job;
    this.publish(job);
    let signal!: StartSignal;
    const pruning = new Promise<void>((resolve, reject) => (signal = { resolve, reject }));
    job.done = this.run(job, source, signal);
    await pruning;
    return this.summary(job);
  }

  /**
   * A dry run: the recipe's cost on this machine (candidates, training tokens, predicted wall time
   * and peak memory from step times measured on the source's shape, in a worker); nothing is
   * pruned and no job is kept. Refused (409) while a prune runs: each would slow the other and the
   * measurement would be wrong.
   */
  async estimate(request: PruneJobRequest): Promise<PruneCostEstimate> {
    validateRecipe(request);
    if (this.running) throw new PruneConflictError(`prune job ${this.running.view.id} is running; a dry run measures this machine, so ask again when it is done`, 'prune_in_progress');
    const sourceId = request.source ?? this.deps.denseId;
    const source = this.deps.registry.get(sourceId);
    if (!source) throw new MopInputError(`no model variant '${sourceId}' to prune`);
    const { spec, weights, tokenizer, path, chatTemplate } = source.model;
    // Whether the store already holds the recipe's sampled text is known from its calibration prompts: checked only
    // with the bundled calibration text, since a dry run reads no file a request names (a prune bounds that reading; an estimate does not).
    const store = request.calibration === undefined ? this.deps.store?.() : undefined;
    const sourceDigest = store?.sourceDigest(sourceId);
    return estimateInWorker(
      {
        model: { spec, weights, tokenizer, path, chatTemplate },
        recipe: recipeOf(request),
        ...(this.deps.pruneThreads !== undefined && { threads: this.deps.pruneThreads }),
        device: source.target.device,
        nice: this.deps.pruneNice,
        ...(store && sourceDigest !== undefined && { selfTextStore: { root: store.root, sourceDigest } }),
      },
      this.deps.pruneHeapMb !== undefined ? { heapMb: this.deps.pruneHeapMb } : {},
    );
  }

  get(id: string): PruneJobView | undefined {
    const job = this.jobs.get(id);
    return job && { ...job.view };
  }

  list(): PruneJobView[] {
    return [...this.jobs.values()].map((j) => this.summary(j));
  }

  /** Whether `id` named a job that is no longer kept: aged out of the history, or refused (400) as it started. */
  forgotten(id: string): boolean {
    const n = /^prune-([1-9][0-9]*)$/.exec(id)?.[1];
    return n !== undefined && Number(n) <= this.counter && !this.jobs.has(id);
  }

  /** Cancel a running job; a finished one cannot be (409). Resolves when it has stopped. */
  async cancel(id: string): Promise<PruneJobView | undefined> {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    if (job.view.status !== 'running') throw new PruneConflictError(`prune job ${id} already ${job.view.status}; only a running job can be cancelled`, 'job_finished');
    this.stop(job);
    await job.done;
    return this.summary(job);
  }

  /**
   * Shutdown: start no more jobs, cancel whatever runs and wait up to `graceMs` for its thread to
   * end (no native call may be cut short). A worker that does not stop in time (inside a long
   * ONNX Runtime call) is left to end with the process: terminating it would abort the process.
   */
  async close(graceMs: number): Promise<void> {
    this.closed = true;
    const job = this.running;
    if (!job) return;
    this.stop(job);
    const stopped = (async () => {
      await job.done;
      await job.worker?.exited;
    })();
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([stopped.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), graceMs)))]);
    clearTimeout(timer);
    if (!inTime) {
      this.deps.log(`prune ${job.view.id}: its worker did not stop within ${graceMs} ms of the cancel; shutting down without waiting for it`);
      job.worker?.detach();
    }
  }

  private stop(job: PruneJob): void {
    job.cancelled = true;
    job.abort.abort();
    job.worker?.cancel();
  }

  /** `work`, or an AbortError as soon as the job is cancelled (a worker that ignores its cancel holds nothing up). */
  private untilCancelled<T>(job: PruneJob, work: Promise<T>): Promise<T> {
    return Promise.race([work, job.whenCancelled]);
  }

  /**
   * Everything before pruning: the named files checked (regular files only, bounded in size and
   * time), the store looked up, the worker started and its calibration text read, within
   * calibratedTimeoutMs. Throws MopInputError for bad input.
   */
  private async prepare(job: PruneJob, source: EngineVariant): Promise<void> {
    const { request } = job.view;
    const limits: InputFileLimits = { ...this.deps.inputFiles, signal: job.abort.signal };
    let inputBytes = 0;
    for (const o of pruneOptions) {
      const path = request[o.key];
      if (namesFile(o, path)) inputBytes += await checkInputFile(o, path, limits);
    }
    const dense = this.deps.registry.get(this.deps.denseId);
    const referenceBlocks = parameterCounts((dense ?? source).model.spec).blocks;
    job.stored = await this.untilCancelled(job, this.lookUp(source.id, request, referenceBlocks, source.target, limits));
    job.view.storeKey = job.stored?.key ?? null;
    job.view.fromStore = job.stored?.hit !== undefined || job.stored?.served !== undefined;
    if (job.stored?.hit || job.stored?.served !== undefined) return;
    job.worker = (this.deps.startWorker ?? startPruneWorker)(
      {
        model: { spec: source.model.spec, weights: source.model.weights, tokenizer: source.model.tokenizer, path: source.model.path, ...(source.model.chatTemplate !== undefined && { chatTemplate: source.model.chatTemplate }) },
        recipe: request,
        ...(dense && { referenceBlocks: parameterCounts(dense.model.spec).blocks }),
        ...(this.deps.pruneThreads !== undefined && { threads: this.deps.pruneThreads }),
        device: source.target.device,
        servingTarget: source.target,
        nice: this.deps.pruneNice,
        ...(job.stored && { store: { root: job.stored.store.root, key: job.stored.key, sourceDigest: job.stored.sourceDigest, recipe: job.stored.recipe, chatTemplate: source.model.chatTemplate } }),
      },
      (p) => {
        job.view.progress = p;
        this.publish(job);
        this.logProgress(job);
      },
      this.deps.pruneHeapMb !== undefined ? { heapMb: this.deps.pruneHeapMb } : {},
    );
    // A cancel in the same turn as the start (the worker did not exist yet) reaches it here.
    if (job.cancelled) job.worker.cancel();
    const ms = this.deps.calibratedTimeoutMs ?? calibratedTimeoutMs(inputBytes);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PruneWorkerError(`the prune worker did not read its calibration and recovery text within ${ms / 1000} s; the job failed, its worker was asked to stop, and the next prune may start`)), ms);
    });
    try {
      await this.untilCancelled(job, Promise.race([job.worker.calibrated, late]));
    } finally {
      clearTimeout(timer);
    }
  }

  private lastLogged = 0;

  private logProgress(job: PruneJob): void {
    const p = job.view.progress;
    if (!p || performance.now() - this.lastLogged < 5000) return;
    this.lastLogged = performance.now();
    this.deps.log(`prune ${job.view.id}: step ${p.step}/${p.totalEstimate}, ratio ${p.ratio.toFixed(3)}: ${p.message}`);
  }

  /** With a store: the job's key, and the entry when it is already there (a cache hit: no prune). */
  private async lookUp(sourceId: string, request: PruneJobRequest, referenceBlocks: number, servingTarget: ExecutionTarget, limits: InputFileLimits): Promise<PruneJob['stored']> {
    const store = this.deps.store?.();
    const sourceDigest = store?.sourceDigest(sourceId);
    if (!store || sourceDigest === undefined) return undefined;
    const key = await pruneStoreKey(sourceDigest, recipeOf(request), referenceBlocks, servingTarget, limits);
    const served = store.variantWithKey(key.key);
    return { ...key, store, served, hit: served === undefined ? await store.find(key.key) : undefined };
  }

  /** The pruned model: from the worker, or read from the store on a cache hit. */
  private async produce(job: PruneJob): Promise<PrunedModel> {
    const hit = job.stored?.hit;
    if (!hit) return job.worker!.result;
    const loaded = await job.stored!.store.load(hit.dir);
    if (!loaded.report) throw new Error(`model-store entry ${hit.key} has no report.json; delete it (DELETE /admin/models/<id>?purge=true) to prune again`);
    return { spec: loaded.model.spec, weights: loaded.model.weights, report: loaded.report };
  }

  /** The whole job: prepare (then `pruning` settles), prune, register; never throws. */
  private async run(job: PruneJob, source: EngineVariant, pruning: StartSignal): Promise<void> {
    const { request } = job.view;
    const { log } = this.deps;
    let prepared = false;
    let refused = false;
    try {
      try {
        await this.prepare(job, source);
      } catch (e) {
        job.worker?.cancel();
        throw e;
      }
      prepared = true;
      pruning.resolve();
      const served = job.stored?.served;
      if (served !== undefined) {
        // The same work is already served here (restored from the store): nothing to prune or load.
        job.view.variant = served;
        log(`prune ${job.view.id}: variant '${served}' already serves entry ${job.stored!.key}; nothing to prune`);
        if (request.activate) {
          this.deps.activate(served);
          await job.stored!.store.recordAdded(served, job.stored!.key, true);
        }
        job.view.status = 'succeeded';
        return;
      }
      if (job.stored?.hit) log(`prune ${job.view.id}: ${request.strategy} to ${request.target} of ${source.id} is in the model store (entry ${job.stored.key}); loading it instead of pruning`);
      else log(`prune ${job.view.id}: ${request.strategy} to ${request.target} of ${source.id} (${request.samples}×${request.seqLen} calibration tokens, criterion ${request.criterion}, ${this.deps.pruneThreads ?? 'all'} prune threads)`);
      const result = await this.untilCancelled(job, this.produce(job));
      if (job.cancelled) throw new DOMException('cancelled', 'AbortError');
      const variantId = request.id ?? this.uniqueId(`${request.strategy}-${Math.round(request.target * 100)}`);
      const model: LoadedModel = { ...source.model, spec: result.spec, weights: result.weights, path: `${source.model.path} → ${variantId}` };
      // Once the pruned model is being started, the job runs to its end: a cancel now is too late.
      const variant = await this.deps.addVariant(variantId, model, source, result.report.result.ratio);
      for (const s of result.report.steps) this.deps.metrics()?.countPruneStep(request.strategy, s.chosen);
      job.view.report = result.report;
      job.view.variant = variant.id;
      if (request.activate) this.deps.activate(variantId);
      // Recorded only once the entry is in the store (a hit, or the worker's put succeeded).
      if (job.stored) await job.stored.store.recordAdded(variantId, job.stored.key, request.activate);
      // Succeeded only now: a client that sees the status may start the next job at once.
      job.view.status = 'succeeded';
      log(`prune ${job.view.id}: done in ${((performance.now() - job.started) / 1000).toFixed(1)} s: variant '${variantId}', ratio ${result.report.result.ratio.toFixed(3)}, ${result.report.result.steps.depth} depth + ${result.report.result.steps.width} width steps`);
    } catch (e) {
      if (job.cancelled) {
        job.view.status = 'cancelled';
        log(`prune ${job.view.id}: cancelled`);
        if (!prepared) pruning.resolve();
      } else {
        job.view.status = 'failed';
        job.view.error = e instanceof Error ? e.message : String(e);
        // Bad input found while starting: the request is answered 400 and keeps no job.
        refused = !prepared && e instanceof MopInputError;
        if (refused) log(`prune ${job.view.id}: refused: ${job.view.error}`);
        else log(`prune ${job.view.id}: failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        if (!prepared) pruning.reject(refused || e instanceof PruneWorkerError ? e : new PruneWorkerError(`the prune worker failed before it started pruning: ${job.view.error}`));
      }
    } finally {
      // In the same turn as the status change, so no request sees a finished job still 'running' here.
      if (this.running === job) this.running = undefined;
      job.view.finishedAt = new Date().toISOString();
      if (!refused) this.deps.metrics()?.observePruneJob(request.strategy, job.view.status, (performance.now() - job.started) / 1000);
      this.publish(job);
      if (refused) this.jobs.delete(job.view.id);
      this.trimHistory();
    }
  }

  /** Forget the oldest finished jobs beyond the history limit (the running one is always kept). */
  private trimHistory(): void {
    const finished = [...this.jobs.values()].filter((j) => j !== this.running);
    for (const j of finished.slice(0, Math.max(0, finished.length - this.historyLimit))) this.jobs.delete(j.view.id);
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
    this.deps.publish({ type: 'job', job: this.summary(job) });
  }
}
