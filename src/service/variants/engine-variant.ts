/**
 * A served variant backed by an engine worker: the model it was built from (weights shared with
 * the worker, kept here as the source of later prunes) and the worker's client. When the worker
 * dies, the requests it held fail (503), the variant restarts it, and after too many deaths in a
 * short time gives up and reports itself unavailable; other variants are untouched.
 */
import type { PromptScores } from '../../runtime/engine/prompt-scores.ts';
import type { Scheduler, SchedulerOptions } from '../../runtime/engine/scheduler-types.ts';
import type { GrammarSpec } from '../../runtime/grammar/grammar-spec.ts';
import type { LoadedModel } from '../../runtime/model/loaded-model.ts';
import { shareFileBlocks, shareWeights } from '../../runtime/model/shared-weights.ts';
import { parameterCounts } from '../../runtime/model/spec.ts';
import type { Tokenizer } from '../../runtime/tokenizer/types.ts';
import type { ServedVariant, VariantStatus } from './served-variant.ts';
import { EngineClient, heartbeatMsFor } from './engine-client.ts';
import { EngineStalledError, VariantUnavailableError } from './engine-errors.ts';
import { GrammarCompileThread } from './grammar-compile-thread.ts';
import { defaultGrammarLimits, GrammarGate, type GrammarLimits } from './grammar-gate.ts';
import type { EngineInit, EngineSessionOptions } from './engine-protocol.ts';
import { VariantScheduler } from './variant-scheduler.ts';

export interface RestartPolicy {
  /** Most restarts within `windowMs`; one more death and the variant is unavailable. */
  maxRestarts: number;
  windowMs: number;
}

export const defaultRestartPolicy: RestartPolicy = { maxRestarts: 3, windowMs: 60_000 };

export interface EngineVariantOptions {
  id: string;
  model: LoadedModel;
  tokenizer: Tokenizer;
  session: EngineSessionOptions;
  scheduling: SchedulerOptions;
  compressionRatio: number;
  restart?: RestartPolicy;
  log: (line: string) => void;
  /** Told whenever the status changes (admin events). */
  onStatus?: (v: EngineVariant) => void;
  /** The engine worker's entry module (default: engine-worker.ts); tests wrap it to inject faults. */
  engineWorker?: URL;
  /** An engine step (or silence) longer than this marks the variant stalled (default 60 s). */
  stallMs?: number;
  /** Size and compile-time limits of client grammars (default: 64 KiB, 2 s). */
  grammar?: GrammarLimits;
}

export const DEFAULT_STALL_MS = 60_000;

export class EngineVariant implements ServedVariant {
  readonly id: string;
  readonly tokenizer: Tokenizer;
  readonly parameters: number;
  readonly compressionRatio: number;
  readonly created = Math.floor(Date.now() / 1000);
  status: VariantStatus = 'serving';
  statusReason: string | undefined;
  /** The model with its weights in shared memory: what a prune of this variant starts from. */
  readonly model: LoadedModel;
  /** Submissions go to the current engine, refused unless the variant is serving. */
  readonly scheduler: Scheduler = new VariantScheduler({ currentEngine: () => this.engine, refuseUnlessServing: () => this.refuseUnlessServing() });
  private readonly deaths: number[] = [];
  private released = false;
  /** A restart in progress (admin request or the restart policy): a second one joins it. */
  private restarting: Promise<void> | undefined;
  /** Client grammars are bounded here (size, compile time, compiles waiting) before the engine compiles them. */
  private readonly grammars: GrammarGate;

  private constructor(
    private readonly options: EngineVariantOptions,
    private engine: EngineClient,
  ) {
    this.id = options.id;
    this.tokenizer = options.tokenizer;
    this.model = options.model;
    this.parameters = parameterCounts(options.model.spec).total;
    this.compressionRatio = options.compressionRatio;
    this.grammars = new GrammarGate({
      variant: options.id,
      limits: options.grammar ?? defaultGrammarLimits,
      maxQueue: options.scheduling.maxQueue,
      // The vocabulary the engine worker builds its compiler from.
      compiler: new GrammarCompileThread({ tokenizer: options.model.tokenizer, vocabSize: options.model.spec.vocabSize }),
      engineCheck: (spec) => this.engine.checkGrammar(spec),
      log: options.log,
    });
    this.watch(engine);
  }

  /** Share the weights, start the worker and wait until its session is built. */
  static async start(options: EngineVariantOptions): Promise<EngineVariant> {
    const model: LoadedModel = { ...options.model, weights: shareWeights(options.model.weights), ...(options.model.fileBlocks && { fileBlocks: shareFileBlocks(options.model.fileBlocks) }) };
    const opts = { ...options, model };
    return new EngineVariant(opts, await EngineClient.start(engineInit(opts), opts.engineWorker));
  }

  private get stallMs(): number {
    return this.options.stallMs ?? DEFAULT_STALL_MS;
  }

  get layers() {
    return this.model.spec.layers;
  }

  get path(): string {
    return this.model.path;
  }

  get maxContext(): number {
    return this.engine.maxContext;
  }

  get target() {
    return this.engine.target;
  }

  /** With int8 / int4 weights: matrices run from the checkpoint's own blocks, and quantized at load. */
  get weightBlocks() {
    return this.engine.weightBlocks;
  }

  /** The session options a variant derived from this one is built with. */
  get sessionOptions(): EngineSessionOptions {
    return this.options.session;
  }

  /** The worker thread's id (diagnostics; tests stop it to simulate a crash). */
  get threadId(): number {
    return this.engine.threadId;
  }

  scorePrompt(tokens: readonly number[], topN: number, signal?: AbortSignal): Promise<PromptScores> {
    try {
      this.refuseUnlessServing();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.engine.scorePrompt(tokens, topN, signal);
  }

  checkGrammar(spec: GrammarSpec): Promise<void> {
    try {
      this.refuseUnlessServing();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.grammars.check(spec);
  }

  grammarFailures() {
    return this.grammars.failureCounts();
  }

  stalledMs(): number {
    const since = this.status === 'stalled' ? this.engine.stalledSince : undefined;
    return since === undefined ? 0 : performance.now() - since;
  }

  private refuseUnlessServing(): void {
    if (this.status === 'serving') return;
    const message = `model '${this.id}' is ${this.status}: ${this.statusReason ?? 'its engine is not running'}`;
    throw this.status === 'stalled' ? new EngineStalledError(this.id, message) : new VariantUnavailableError(this.id, message);
  }

  drain(graceMs: number): Promise<void> {
    return this.engine.drain(graceMs);
  }

  async release(): Promise<void> {
    this.released = true;
    await Promise.all([this.engine.release(), this.grammars.close()]);
  }

  /**
   * Replace the engine with a fresh one, whatever its state (serving, stalled, given up on): the
   * requests it holds fail with 503 at once, and the old thread exits at its next step boundary
   * (a thread stuck inside an ONNX Runtime call cannot be stopped sooner without aborting the
   * process). An operator's restart also resets the restart policy's count of deaths.
   */
  restart(reason: string): Promise<void> {
    this.deaths.length = 0;
    return this.replaceEngine(reason);
  }

  private watch(engine: EngineClient): void {
    engine.onUnexpectedExit = (reason) => void this.recover(reason);
    engine.startWatching({
      stallMs: this.stallMs,
      onStall: (reason) => {
        this.options.log(`model '${this.id}': engine stalled: ${reason}; its requests get 503 engine_stalled until it answers again (POST /admin/models/${this.id}/restart starts a new engine)`);
        this.setStatus('stalled', `engine stalled: ${reason}`);
      },
      onRecover: (ms) => {
        if (this.status !== 'stalled') return;
        this.options.log(`model '${this.id}': engine answered again after ${(ms / 1000).toFixed(1)} s stalled; serving`);
        this.setStatus('serving', undefined);
      },
      onStepFailure: (message) => this.options.log(`model '${this.id}': engine step failed: ${message}; the requests it carried ended with 500 engine_error`),
    });
  }

  private replaceEngine(reason: string): Promise<void> {
    if (this.released) return Promise.resolve();
    this.restarting ??= (async () => {
      const old = this.engine;
      old.detach();
      this.setStatus('restarting', reason);
      void old.abandon(new VariantUnavailableError(this.id, `the engine of '${this.id}' stopped (${reason}); the request was not finished`));
      await this.startEngine(reason);
    })().finally(() => (this.restarting = undefined));
    return this.restarting;
  }

  /** Start a new engine; serving when it is up, unavailable when it cannot be built. */
  private async startEngine(reason: string): Promise<void> {
    try {
      const engine = await EngineClient.start(engineInit(this.options), this.options.engineWorker);
      if (this.released) return void (await engine.release());
      this.engine = engine;
      this.watch(engine);
      this.setStatus('serving', undefined);
      this.options.log(`model '${this.id}': engine restarted in ${(engine.loadMs / 1000).toFixed(1)} s (${reason})`);
    } catch (e) {
      this.options.log(`model '${this.id}': engine restart failed: ${e instanceof Error ? e.message : String(e)}; the variant is unavailable`);
      // The cause is in the log: the reason shows on the open /ready and /health and in 503s.
      this.setStatus('unavailable', 'its engine could not be restarted (the server log has the cause)');
    }
  }

  private setStatus(status: VariantStatus, reason: string | undefined): void {
    this.status = status;
    this.statusReason = reason;
    this.options.onStatus?.(this);
  }

  private async recover(reason: string): Promise<void> {
    if (this.released) return;
    const now = Date.now();
    const policy = this.options.restart ?? defaultRestartPolicy;
    this.deaths.push(now);
    while (this.deaths.length > 0 && this.deaths[0]! < now - policy.windowMs) this.deaths.shift();
    if (this.deaths.length > policy.maxRestarts) {
      this.options.log(`model '${this.id}': engine stopped (${reason}); ${this.deaths.length} times in ${policy.windowMs / 1000} s, giving up: the variant is unavailable`);
      this.setStatus('unavailable', `its engine stopped ${this.deaths.length} times in ${policy.windowMs / 1000} s (last: ${reason})`);
      return;
    }
    this.options.log(`model '${this.id}': engine stopped (${reason}); restarting it`);
    this.setStatus('restarting', reason);
    await this.startEngine(reason);
  }
}

function engineInit(o: EngineVariantOptions): EngineInit {
  return { heartbeatMs: heartbeatMsFor(o.stallMs ?? DEFAULT_STALL_MS), variant: o.id, spec: o.model.spec, weights: o.model.weights, ...(o.model.fileBlocks && { fileBlocks: o.model.fileBlocks }), tokenizer: o.model.tokenizer, session: o.session, scheduling: o.scheduling };
}
