/**
 * The main thread's side of one engine worker: a Scheduler whose submit and abort are messages
 * and whose events and stats come back over the worker's port. Requests are checked here first
 * (closed, empty or too long prompt, maxTokens, sampling parameters, queue room) so a bad request
 * is refused synchronously, exactly as the in-thread BatchScheduler refuses it.
 */
import type { Worker } from 'node:worker_threads';
import { admitOrThrow, type HeldRequests, waitingRequests } from '../../runtime/engine/admission.ts';
import { ContextLengthError, InvalidRequestError } from '../../runtime/engine/errors.ts';
import { EventChannel } from '../../runtime/engine/event-channel.ts';
import type { PromptScores } from '../../runtime/engine/prompt-scores.ts';
import { validateSamplingParams } from '../../runtime/engine/sampling-params.ts';
import { type RequestHandle, type Scheduler, SchedulerClosedError, type SchedulerStats, zeroEngineTimes } from '../../runtime/engine/scheduler-types.ts';
import type { GenerationEvent, GenerationRequest } from '../../runtime/engine/sequence.ts';
import type { ExecutionTarget } from '../../runtime/device/device.ts';
import type { GrammarSpec } from '../../runtime/grammar/grammar-spec.ts';
import { siblingModule, startWorkerThread } from '../../runtime/threads/worker-thread.ts';
import { EngineStalledError, fromWireError, VariantUnavailableError } from './engine-errors.ts';
import type { EngineInit, FromEngine, ToEngine, WeightBlockCounts } from './engine-protocol.ts';

interface Pending {
  handle: RequestHandle;
  channel: EventChannel<GenerationEvent>;
  detach: () => void;
}

interface PendingScore {
  resolve: (s: PromptScores) => void;
  reject: (e: Error) => void;
  detach: () => void;
}

/** What the main thread watches an engine worker by. */
export interface EngineWatch {
  /** No message for this long, or one session call running this long, and the engine is stalled. */
  stallMs: number;
  /** Told once when the engine is found stalled (its requests have already failed). */
  onStall?: (reason: string) => void;
  /** Told once when a stalled engine is heard from again, out of its step. */
  onRecover?: (stalledMs: number) => void;
  /** Told when a model step failed in the worker (its requests were failed with the error). */
  onStepFailure?: (message: string) => void;
}

/** How long to wait for a worker that should answer a drain or release, past any grace it was given. */
const ANSWER_MARGIN_MS = 5000;

/** The worker's heartbeat period for a stall limit: several beats fit in one limit. */
export function heartbeatMsFor(stallMs: number): number {
  return Math.max(20, Math.min(1000, Math.floor(stallMs / 4)));
}

/** The engine worker thread's entry module. */
export const defaultEngineWorker = siblingModule(import.meta.url, 'engine-worker');

const idleStats = (capacity: number): SchedulerStats => ({ running: 0, waiting: 0, lastBatchSize: 0, kvTokensUsed: 0, kvTokensCapacity: capacity, engine: zeroEngineTimes() });

export class EngineClient implements Scheduler {
  private readonly pending = new Map<number, Pending>();
  private readonly scoring = new Map<number, PendingScore>();
  /** Grammar checks in flight: settled by 'grammar-checked' or 'rejected'. */
  private readonly grammarChecks = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private closed = false;
  private exited = false;
  private latest: SchedulerStats;
  private drainWaiters: (() => void)[] = [];
  private releaseWaiter: (() => void) | undefined;
  /** performance.now() of the worker's last message, and the session-call time it reported then. */
  private lastHeard = performance.now();
  private lastBusyMs = 0;
  /** performance.now() since which the engine counts as stalled; undefined while it answers. */
  private stalledAt: number | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private watch: EngineWatch | undefined;
  /** Called once if the worker stops without being released (crash, out of memory, terminate). */
  onUnexpectedExit: ((reason: string) => void) | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly init: EngineInit,
    readonly maxContext: number,
    readonly prefillChunk: number,
    readonly target: ExecutionTarget,
    /** How long the worker took to build its graph and session. */
    readonly loadMs: number,
    /** With int8 / int4 weights: matrices run from the checkpoint's own blocks, and quantized at load. */
    readonly weightBlocks: WeightBlockCounts | undefined,
  ) {
    this.latest = idleStats(init.session.maxBatch * maxContext);
    worker.on('message', (m: FromEngine) => this.onMessage(m));
    worker.on('error', (e) => this.onExit(`engine worker error: ${e.message}`));
    worker.on('exit', (code) => this.onExit(`engine worker exited with code ${code}`));
  }

  /**
   * Start a worker and wait until its session is built; a model that fails to build rejects.
   * `module` is the worker's entry (default: engine-worker); tests pass a wrapper that injects faults.
   */
  static start(init: EngineInit, module: URL = defaultEngineWorker): Promise<EngineClient> {
    const worker = startWorkerThread(module, { workerData: init, name: `engine ${init.variant}` });
    return new Promise((resolve, reject) => {
      const onMessage = (m: FromEngine) => {
        if (m.type === 'ready') {
          cleanup();
          resolve(new EngineClient(worker, init, m.maxContext, m.prefillChunk, m.target, m.loadMs, m.weightBlocks));
        } else if (m.type === 'init-failed') {
          cleanup();
          reject(fromWireError(m.error));
        }
      };
      const onError = (e: Error) => {
        cleanup();
        reject(new VariantUnavailableError(init.variant, `engine worker for '${init.variant}' failed to start: ${e.message}`));
      };
      const onExit = (code: number) => {
        cleanup();
        reject(new VariantUnavailableError(init.variant, `engine worker for '${init.variant}' exited with code ${code} while starting`));
      };
      const cleanup = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
  }

  get threadId(): number {
    return this.worker.threadId;
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** Since when (performance.now()) the engine has been stalled; undefined while it answers. */
  get stalledSince(): number | undefined {
    return this.stalledAt;
  }

  /**
   * Watch the worker: a stall (no message, or one session call, for longer than `stallMs`) fails
   * its requests at once and is reported; so is its recovery. Checked several times per limit.
   */
  startWatching(watch: EngineWatch): void {
    this.watch = watch;
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => this.checkStall(), Math.max(10, Math.min(250, Math.floor(watch.stallMs / 4))));
    this.watchdog.unref();
  }

  /** Stop reporting to the owner (a replaced engine that is left to exit on its own). */
  detach(): void {
    clearInterval(this.watchdog);
    this.watch = undefined;
    this.onUnexpectedExit = undefined;
  }

  private held(): HeldRequests {
    return { generations: this.pending.size, scorings: this.scoring.size };
  }

  private refuseIfDown(): void {
    if (this.exited) throw new VariantUnavailableError(this.init.variant, `the engine of '${this.init.variant}' is not running`);
    if (this.stalledAt !== undefined) throw new EngineStalledError(this.init.variant, this.stallMessage());
    if (this.closed) throw new SchedulerClosedError('the server is shutting down and accepts no new requests');
  }

  private stallMessage(): string {
    return `the engine of '${this.init.variant}' has not finished a step for over ${this.watch?.stallMs ?? 0} ms (--engine-stall-ms); retry later or on another model`;
  }

  submit(request: GenerationRequest): RequestHandle {
    this.refuseIfDown();
    const promptLength = request.promptTokens.length;
    if (promptLength === 0) throw new InvalidRequestError('the prompt has no tokens');
    if (promptLength >= this.maxContext) throw new ContextLengthError(`the prompt has ${promptLength} tokens; the context holds ${this.maxContext} (prompt + at least one generated token)`);
    if (!(Number.isInteger(request.maxTokens) && request.maxTokens >= 1)) throw new InvalidRequestError(`maxTokens must be a positive integer, got ${request.maxTokens}`);
    validateSamplingParams({ ...request.sampling });
    admitOrThrow('generations', this.held(), this.init.session.maxBatch, this.init.scheduling.maxQueue);
    const id = this.nextId++;
    const abort = () => this.send({ type: 'abort', id });
    const channel = new EventChannel<GenerationEvent>(abort);
    const handle: RequestHandle = { id, submittedAt: performance.now(), admittedAt: undefined, events: channel };
    const { signal, ...wire } = request;
    signal?.addEventListener('abort', abort, { once: true });
    this.pending.set(id, { handle, channel, detach: () => signal?.removeEventListener('abort', abort) });
    this.send({ type: 'submit', id, request: wire });
    if (signal?.aborted) abort();
    return handle;
  }

  /**
   * Prompt log-probabilities from the worker's scoring session (a message round trip; no tensor
   * crosses), admitted, timed out, aborted and drained like a generation.
   */
  scorePrompt(tokens: readonly number[], topN: number, signal?: AbortSignal): Promise<PromptScores> {
    try {
      this.refuseIfDown();
      if (tokens.length === 0) throw new InvalidRequestError('the prompt has no tokens');
      if (tokens.length > this.maxContext) throw new ContextLengthError(`the prompt has ${tokens.length} tokens; the context holds ${this.maxContext}`);
      admitOrThrow('scorings', this.held(), this.init.session.maxBatch, this.init.scheduling.maxQueue);
    } catch (e) {
      return Promise.reject(e);
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const abort = () => this.send({ type: 'abort', id });
      signal?.addEventListener('abort', abort, { once: true });
      this.scoring.set(id, { resolve, reject, detach: () => signal?.removeEventListener('abort', abort) });
      this.send({ type: 'score', id, tokens: [...tokens], topN });
      if (signal?.aborted) abort();
    });
  }

  /**
   * Compile a structured-output grammar in the worker (where compiling and masking run), so a bad
   * one is refused before any generation starts: rejects with a GrammarError saying what is wrong.
   */
  checkGrammar(spec: GrammarSpec): Promise<void> {
    try {
      this.refuseIfDown();
    } catch (e) {
      return Promise.reject(e);
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.grammarChecks.set(id, { resolve, reject });
      this.send({ type: 'check-grammar', id, spec });
    });
  }

  stats(): SchedulerStats {
    if (this.exited) return { ...idleStats(this.latest.kvTokensCapacity), engine: this.latest.engine };
    // The queue is known here at once; the rest is as the worker last pushed it.
    return { ...this.latest, waiting: waitingRequests(this.held(), this.init.session.maxBatch) };
  }

  /**
   * Stop accepting; resolve when the worker has finished (or, after graceMs, aborted) every request.
   * A worker that does not answer (stalled) is not waited for past the grace and a margin.
   */
  drain(graceMs: number): Promise<void> {
    this.closed = true;
    if (this.exited) return Promise.resolve();
    return this.bounded(graceMs + ANSWER_MARGIN_MS, (done) => {
      this.drainWaiters.push(done);
      this.send({ type: 'drain', graceMs });
    });
  }

  /**
   * Free the session and end the thread (after drain). Requests still held fail. A worker that
   * does not answer within a margin is left to exit with the process (never terminated: it may be
   * inside an ONNX Runtime call).
   */
  release(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    if (this.exited) return Promise.resolve();
    // Failed before the wait, not after it: requests of a worker that never answered the drain get their error now.
    this.failAll(new VariantUnavailableError(this.init.variant, `the engine of '${this.init.variant}' was released before the request finished`));
    return this.bounded(ANSWER_MARGIN_MS, (done) => {
      this.releaseWaiter = done;
      this.send({ type: 'release' });
    });
  }

  /** Run `start(done)` and resolve when it calls done, or after `ms` at the latest. */
  private bounded(ms: number, start: (done: () => void) => void): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      timer.unref();
      start(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * End the thread as a crash would (its requests fail). It is asked to exit between two steps
   * rather than terminated: terminating a thread inside an ONNX Runtime call aborts the whole
   * process (onnxruntime-node 1.30 throws a C++ exception nobody catches).
   */
  crash(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return this.bounded(ANSWER_MARGIN_MS, (done) => {
      this.worker.once('exit', () => done());
      this.send({ type: 'exit' });
    });
  }

  /**
   * Give up on this engine: its requests fail with `error` now, and the thread is asked to exit at
   * its next step boundary (at once if it is idle; when its stuck call returns if it is stalled).
   */
  abandon(error: Error): Promise<void> {
    this.closed = true;
    this.detach();
    this.failAll(error);
    return this.crash();
  }

  private checkStall(): void {
    if (this.exited || !this.watch) return;
    const now = performance.now();
    const silent = now - this.lastHeard;
    // Time in the current session call: as last reported, plus the silence since.
    const inStep = this.lastBusyMs > 0 ? this.lastBusyMs + silent : 0;
    const stalledFor = Math.max(silent, inStep);
    if (this.stalledAt === undefined && stalledFor > this.watch.stallMs) {
      this.stalledAt = now - stalledFor;
      const reason = `no step finished for ${Math.round(stalledFor)} ms (limit ${this.watch.stallMs} ms, --engine-stall-ms)`;
      // Fail what it holds now (the worker is told to drop them when it answers again).
      const error = new EngineStalledError(this.init.variant, this.stallMessage());
      for (const id of [...this.pending.keys(), ...this.scoring.keys()]) this.send({ type: 'abort', id });
      this.failAll(error);
      this.watch.onStall?.(reason);
    }
  }

  private heard(busyMs: number): void {
    this.lastHeard = performance.now();
    this.lastBusyMs = busyMs;
    if (this.stalledAt !== undefined && busyMs <= (this.watch?.stallMs ?? Infinity)) {
      const stalledMs = this.lastHeard - this.stalledAt;
      this.stalledAt = undefined;
      this.watch?.onRecover?.(stalledMs);
    }
  }

  private send(m: ToEngine): void {
    if (!this.exited) this.worker.postMessage(m);
  }

  private onMessage(m: FromEngine): void {
    this.heard(m.type === 'heartbeat' ? m.busyMs : m.type === 'event' || m.type === 'scored' ? 0 : this.lastBusyMs);
    switch (m.type) {
      case 'event': {
        const p = this.pending.get(m.id);
        if (!p) return;
        if (m.admittedAt !== undefined) p.handle.admittedAt = m.admittedAt - performance.timeOrigin;
        p.channel.push(m.event);
        if (m.event.type === 'finish') this.settle(m.id, p).channel.end();
        break;
      }
      case 'scored': {
        const s = this.scoring.get(m.id);
        if (s) this.settleScore(m.id, s).resolve(m.scores);
        break;
      }
      case 'grammar-checked':
        this.takeGrammarCheck(m.id)?.resolve();
        break;
      case 'rejected': {
        const g = this.takeGrammarCheck(m.id);
        if (g) {
          g.reject(fromWireError(m.error));
          break;
        }
        const s = this.scoring.get(m.id);
        if (s) {
          this.settleScore(m.id, s).reject(fromWireError(m.error));
          break;
        }
        const p = this.pending.get(m.id);
        if (p) this.settle(m.id, p).channel.fail(fromWireError(m.error));
        break;
      }
      case 'stats':
        this.latest = m.stats;
        break;
      case 'heartbeat':
        break;
      case 'step-failed':
        this.watch?.onStepFailure?.(m.error.message);
        break;
      case 'drained':
        for (const w of this.drainWaiters.splice(0)) w();
        break;
      case 'released':
        this.exited = true;
        clearInterval(this.watchdog);
        this.releaseWaiter?.();
        break;
    }
  }

  private settle(id: number, p: Pending): Pending {
    this.pending.delete(id);
    p.detach();
    return p;
  }

  private takeGrammarCheck(id: number) {
    const g = this.grammarChecks.get(id);
    this.grammarChecks.delete(id);
    return g;
  }

  private settleScore(id: number, s: PendingScore): PendingScore {
    this.scoring.delete(id);
    s.detach();
    return s;
  }

  /** Every request held here ends with `error` (the worker can no longer finish them). */
  private failAll(error: Error): void {
    for (const [id, p] of this.pending) this.settle(id, p).channel.fail(error);
    for (const [id, s] of this.scoring) this.settleScore(id, s).reject(error);
    for (const id of [...this.grammarChecks.keys()]) this.takeGrammarCheck(id)?.reject(error);
  }

  private onExit(reason: string): void {
    if (this.exited) return;
    this.exited = true;
    clearInterval(this.watchdog);
    this.failAll(new VariantUnavailableError(this.init.variant, `the engine of '${this.init.variant}' stopped (${reason}); the request was not finished`));
    for (const w of this.drainWaiters.splice(0)) w();
    this.releaseWaiter?.();
    this.onUnexpectedExit?.(reason);
  }
}
