/**
 * The service the HTTP layer talks to: served variants (each in its own engine worker), which one
 * is active, the A/B split, prune jobs, and unloading. It hands out only ServedVariant views and
 * plain data; sessions and weights stay behind it.
 */
import type { SchedulerOptions } from '../runtime/engine/scheduler-types.ts';
import type { LoadedModel } from '../runtime/model/loaded-model.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { parameterCounts } from '../runtime/model/spec.ts';
import { EngineVariant, type RestartPolicy } from './variants/engine-variant.ts';
import type { EngineSessionOptions } from './variants/engine-protocol.ts';
import { PruneJobs, type PruneMetrics } from './prune/prune-jobs.ts';
import { ServiceEvents } from './service-events.ts';
import type { StoredModel } from './store-sync/stored-model-io.ts';
import type { StoreServing } from './store-sync/store-serving.ts';
import type { StoreSync } from './store-sync/store-sync.ts';
import type { GrammarLimits } from './variants/grammar-gate.ts';
import type { ServedVariant } from './variants/served-variant.ts';
import { type TrafficSplit, VariantRegistry } from './variant-registry.ts';

export const DEFAULT_MAX_VARIANTS = 8;

/** One more variant cannot be served: the id is taken, or --max-variants are served (409). */
export class VariantLimitError extends Error {
  override name = 'VariantLimitError';
  constructor(
    message: string,
    readonly code: 'variant_exists' | 'too_many_variants',
  ) {
    super(message);
  }
}

export interface ModelServiceOptions {
  /** The dense model as loaded, and the id clients use for it. */
  model: LoadedModel;
  tokenizer: Tokenizer;
  id: string;
  session: EngineSessionOptions;
  scheduling: SchedulerOptions;
  pruneThreads: number | undefined;
  /** JavaScript heap limit of the prune worker in MiB; undefined = Node's default. */
  pruneHeapMb?: number;
  /** Nice value of the prune worker's threads on Linux (default 10): serving wins CPU contention. */
  pruneNice?: number;
  /** Finished prune jobs kept for GET /admin/prune (default 32; --max-job-history). */
  maxJobHistory?: number;
  restart?: RestartPolicy;
  /** The engine worker's entry module (default: engine-worker.ts); tests wrap it to inject faults. */
  engineWorker?: URL;
  /** An engine step (or silence) longer than this marks its variant stalled (--engine-stall-ms; default 60 s). */
  stallMs?: number;
  /** Most variants served at once, dense included (--max-variants; default 8). */
  maxVariants?: number;
  /** Size and compile-time limits of client grammars, every variant's (--max-grammar-bytes, --grammar-compile-timeout-ms). */
  grammar?: GrammarLimits;
  /** Grace for requests on a variant unloaded because another replica dropped it (default 30 s). */
  unloadGraceMs?: number;
  log: (line: string) => void;
}

export class ModelService {
  readonly events = new ServiceEvents();
  readonly jobs: PruneJobs;
  private readonly variants = new VariantRegistry<EngineVariant>();
  /** Ids of variants whose engine is starting: reserved, and counted against --max-variants. */
  private readonly starting = new Set<string>();
  private metrics: PruneMetrics | undefined;
  private sync: StoreSync | undefined;

  /** The dense model's id: the default source of prunes and the reference of compression ratios. */
  readonly denseId: string;

  private constructor(
    /** Without `model`: the loader's arrays are not kept; the dense variant's shared copy is. */
    private readonly options: Omit<ModelServiceOptions, 'model'>,
    dense: EngineVariant,
  ) {
    this.denseId = dense.id;
    this.variants.add(dense);
    this.jobs = new PruneJobs({
      registry: this.variants,
      publish: (e) => this.events.publish(e),
      metrics: () => this.metrics,
      log: options.log,
      denseId: dense.id,
      pruneThreads: options.pruneThreads,
      pruneHeapMb: options.pruneHeapMb,
      pruneNice: options.pruneNice ?? 10,
      ...(options.maxJobHistory !== undefined && { maxJobHistory: options.maxJobHistory }),
      addVariant: (id, model, source, ratio) => this.addVariant(id, model, source, ratio),
      activate: (id) => this.applyActive(id),
      store: () => this.sync,
    });
  }

  /** Start the dense model's engine worker; resolves when it can serve. */
  static async start(options: ModelServiceOptions): Promise<ModelService> {
    let service: ModelService | undefined;
    const dense = await EngineVariant.start({ ...variantBase(options), id: options.id, model: options.model, session: options.session, compressionRatio: 0, onStatus: (v) => service?.publishStatus(v) });
    const { model: _loaded, ...kept } = options;
    service = new ModelService(kept, dense);
    return service;
  }

  /** The server's metrics, attached once they exist (they read the variant list from this service). */
  attachMetrics(metrics: PruneMetrics): void {
    this.metrics = metrics;
  }

  /**
   * Follow a model store: restore the variants and choices its manifest records (the dense model
   * keeps serving meanwhile), then record every change made here and apply other replicas' changes.
   * Resolves when the restore is done.
   */
  async attachStore(sync: StoreSync): Promise<{ restored: string[]; recordedActive: string | null }> {
    this.sync = sync;
    const dense = this.variants.get(this.denseId)!;
    const { restored, manifest } = await sync.start(this.storeServing(), dense.model);
    return { restored, recordedActive: manifest?.active ?? null };
  }

  /** How this service follows a model store (--model-store), if it does. */
  get storeSync(): StoreSync | undefined {
    return this.sync;
  }

  /** Every served variant. */
  list(): ServedVariant[] {
    return this.variants.list();
  }

  get(id: string): ServedVariant | undefined {
    return this.variants.get(id);
  }

  has(id: string): boolean {
    return this.variants.has(id);
  }

  /** The model a variant serves, weights in shared memory (what an export reads); undefined for an unknown id. */
  modelOf(id: string): LoadedModel | undefined {
    return this.variants.get(id)?.model;
  }

  get active(): ServedVariant | undefined {
    return this.variants.active;
  }

  /** The variant for a request's `model` field (omitted/"default": the active one, or the split's). Call once per request. */
  resolve(model: string | null | undefined): ServedVariant | undefined {
    return this.variants.resolve(model);
  }

  /** The variant `model` names, or the active one for the default alias; never draws the A/B split. */
  lookup(model: unknown): ServedVariant | undefined {
    return this.variants.lookup(model);
  }

  get split(): TrafficSplit | undefined {
    return this.variants.split;
  }

  /** Start, replace or (undefined) end the A/B split, and record it in the model store. */
  async setSplit(split: TrafficSplit | undefined): Promise<void> {
    this.applySplit(split);
    await this.sync?.recordSplit(split);
  }

  private applySplit(split: TrafficSplit | undefined): void {
    this.variants.setSplit(split);
    this.events.publish({ type: 'split_changed', split: split ?? null });
  }

  /** Injectable randomness of the A/B split (tests). */
  set random(r: () => number) {
    this.variants.random = r;
  }

  /** Make a variant the one new requests get (requests in flight keep theirs), and record it in the model store. */
  async activate(id: string): Promise<void> {
    this.applyActive(id);
    await this.sync?.recordActive(id);
  }

  private applyActive(id: string): void {
    const previous = this.variants.active?.id;
    this.variants.setActive(id);
    this.options.log(`active model: '${id}' (was '${previous}')`);
    this.events.publish({ type: 'active_changed', active: id, previous });
  }

  /**
   * Unregister a variant (not the active one), let its running requests finish, free its engine;
   * drop it from the model store's manifest, and with `purge` delete its entry (resolves true then).
   */
  async unload(id: string, graceMs: number, options: { purge?: boolean } = {}): Promise<{ purged: boolean }> {
    if (options.purge) await this.sync?.checkPurge(id); // a refused purge (409) unloads nothing
    await this.unloadLocal(id, graceMs);
    return { purged: (await this.sync?.recordRemoved(id, options.purge === true)) ?? false };
  }

  private async unloadLocal(id: string, graceMs: number): Promise<void> {
    const v = this.variants.remove(id);
    this.events.publish({ type: 'model_removed', id });
    await v.drain(graceMs);
    await v.release();
    this.options.log(`unloaded model variant '${id}'`);
  }

  /** Shutdown: cancel a running prune, drain every variant (up to graceMs), free the engines. */
  async drain(graceMs: number): Promise<void> {
    // Side by side, so the whole drain fits in one grace period (not one per part).
    await Promise.all([this.sync?.stop(), this.jobs.close(graceMs), ...this.variants.list().map((v) => v.drain(graceMs))]);
  }

  async release(): Promise<void> {
    await Promise.all(this.variants.list().map((v) => v.release()));
  }

  /**
   * Start a fresh engine for a variant, whatever its state (serving, stalled, unavailable): the
   * requests it holds fail with 503 and the old thread exits at its next step boundary. Returns
   * once the restart has begun; the variant's status says when it serves again.
   */
  restart(id: string): void {
    const v = this.variants.get(id);
    if (!v) throw new Error(`no model variant '${id}'`);
    void v.restart('restarted by an operator');
  }

  /** Throws VariantLimitError unless one more variant (not yet registered or starting) fits. */
  checkRoomFor(id?: string): void {
    if (id !== undefined && (this.variants.has(id) || this.starting.has(id))) throw new VariantLimitError(`a model variant '${id}' is already served (or starting); choose another id`, 'variant_exists');
    const max = this.options.maxVariants ?? DEFAULT_MAX_VARIANTS;
    const count = this.variants.list().length + this.starting.size;
    if (count >= max) throw new VariantLimitError(`${count} model variants are served (or starting), the most this server holds (--max-variants ${max}); unload one first (DELETE /admin/models/{id})`, 'too_many_variants');
  }

  /** Start a variant's engine and register it; the id is reserved meanwhile, and an engine that cannot be registered is released. */
  private async addVariant(id: string, model: LoadedModel, source: EngineVariant, compressionRatio: number): Promise<EngineVariant> {
    this.checkRoomFor(id);
    this.starting.add(id);
    let variant: EngineVariant;
    try {
      variant = await EngineVariant.start({ ...variantBase(this.options), id, model, session: source.sessionOptions, compressionRatio, onStatus: (v) => this.publishStatus(v) });
    } finally {
      this.starting.delete(id);
    }
    try {
      this.variants.add(variant);
    } catch (e) {
      await variant.release();
      throw e;
    }
    this.events.publish({ type: 'model_added', id, compressionRatio, parameters: variant.parameters });
    return variant;
  }

  /** The serving side as the model store drives it (restore, other replicas' changes): nothing here writes the manifest. */
  private storeServing(): StoreServing {
    const dense = this.variants.get(this.denseId)!;
    const denseBlocks = parameterCounts(dense.model.spec).blocks;
    return {
      denseId: this.denseId,
      has: (id) => this.variants.has(id),
      activeId: () => this.variants.active?.id,
      isServing: (id) => this.variants.get(id)?.status === 'serving',
      split: () => this.variants.split,
      addStored: async (id: string, stored: StoredModel) => {
        // The report's ratio is against the dense model; without a report, count the blocks.
        const ratio = stored.report?.result.ratio ?? 1 - parameterCounts(stored.model.spec).blocks / denseBlocks;
        await this.addVariant(id, { ...stored.model, tokenizer: dense.model.tokenizer, ...(dense.model.chatTemplate !== undefined && { chatTemplate: dense.model.chatTemplate }) }, dense, ratio);
      },
      applyActive: (id) => this.applyActive(id),
      applySplit: (split) => this.applySplit(split),
      unloadLocal: (id) => this.unloadLocal(id, this.options.unloadGraceMs ?? 30_000),
    };
  }

  private publishStatus(v: EngineVariant): void {
    this.events.publish({ type: 'model_status', id: v.id, status: v.status, reason: v.statusReason ?? null });
  }
}

function variantBase(o: Omit<ModelServiceOptions, 'model'>) {
  return { tokenizer: o.tokenizer, scheduling: o.scheduling, log: o.log, ...(o.restart && { restart: o.restart }), ...(o.engineWorker && { engineWorker: o.engineWorker }), ...(o.stallMs !== undefined && { stallMs: o.stallMs }), ...(o.grammar && { grammar: o.grammar }) };
}
