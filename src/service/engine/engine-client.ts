/**
 * The main thread's side of one engine worker: a Scheduler whose submit and abort are messages
 * and whose events and stats come back over the worker's port. Requests are checked here first
 * (closed, empty or too long prompt, maxTokens, sampling parameters, queue room) so a bad request
 * is refused synchronously, exactly as the in-thread BatchScheduler refuses it.
 */
import type { Worker } from 'node:worker_threads';
import { ContextLengthError } from '../../runtime/engine/errors.ts';
import { EventChannel } from '../../runtime/engine/event-channel.ts';
import type { PromptScorer, PromptScores } from '../../runtime/engine/prompt-scores.ts';
import { validateSamplingParams } from '../../runtime/engine/sampling-params.ts';
import { QueueFullError, type RequestHandle, type Scheduler, SchedulerClosedError, type SchedulerStats, zeroEngineTimes } from '../../runtime/engine/scheduler-types.ts';
import type { GenerationEvent, GenerationRequest } from '../../runtime/engine/sequence.ts';
import type { ExecutionTarget } from '../../runtime/device/device.ts';
import { siblingModule, startWorkerThread } from '../threads/worker-thread.ts';
import { fromWireError, VariantUnavailableError } from './engine-errors.ts';
import type { EngineInit, FromEngine, ToEngine, WeightBlockCounts } from './engine-protocol.ts';

interface Pending {
  handle: RequestHandle;
  channel: EventChannel<GenerationEvent>;
  detach: () => void;
}

/** The engine worker thread's entry module. */
export const defaultEngineWorker = siblingModule(import.meta.url, 'engine-worker');

const idleStats = (capacity: number): SchedulerStats => ({ running: 0, waiting: 0, lastBatchSize: 0, kvTokensUsed: 0, kvTokensCapacity: capacity, engine: zeroEngineTimes() });

export class EngineClient implements Scheduler, PromptScorer {
  private readonly pending = new Map<number, Pending>();
  private readonly scoring = new Map<number, { resolve: (s: PromptScores) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private closed = false;
  private exited = false;
  private latest: SchedulerStats;
  private drainWaiters: (() => void)[] = [];
  private releaseWaiter: (() => void) | undefined;
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

  submit(request: GenerationRequest): RequestHandle {
    if (this.exited) throw new VariantUnavailableError(this.init.variant, `the engine of '${this.init.variant}' is not running`);
    if (this.closed) throw new SchedulerClosedError('the server is shutting down and accepts no new requests');
    const promptLength = request.promptTokens.length;
    if (promptLength === 0) throw new RangeError('the prompt has no tokens');
    if (promptLength >= this.maxContext) throw new ContextLengthError(`the prompt has ${promptLength} tokens; the context holds ${this.maxContext} (prompt + at least one generated token)`);
    if (!(Number.isInteger(request.maxTokens) && request.maxTokens >= 1)) throw new RangeError(`maxTokens must be a positive integer, got ${request.maxTokens}`);
    validateSamplingParams({ ...request.sampling });
    // Same rule as BatchScheduler: requests beyond the free slots are waiting; at most maxQueue of them.
    if (this.pending.size - this.init.session.maxBatch >= this.init.scheduling.maxQueue) {
      throw new QueueFullError(`the request queue is full (${this.init.scheduling.maxQueue} waiting)`);
    }
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

  /** Prompt log-probabilities from the worker's scoring session (a message round trip; no tensor crosses). */
  scorePrompt(tokens: readonly number[], topN: number): Promise<PromptScores> {
    if (this.exited) return Promise.reject(new VariantUnavailableError(this.init.variant, `the engine of '${this.init.variant}' is not running`));
    if (this.closed) return Promise.reject(new SchedulerClosedError('the server is shutting down and accepts no new requests'));
    if (tokens.length === 0) return Promise.reject(new RangeError('the prompt has no tokens'));
    if (tokens.length > this.maxContext) return Promise.reject(new ContextLengthError(`the prompt has ${tokens.length} tokens; the context holds ${this.maxContext}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.scoring.set(id, { resolve, reject });
      this.send({ type: 'score', id, tokens: [...tokens], topN });
    });
  }

  stats(): SchedulerStats {
    if (this.exited) return { ...idleStats(this.latest.kvTokensCapacity), engine: this.latest.engine };
    // The queue is known here at once; the rest is as the worker last pushed it.
    return { ...this.latest, waiting: Math.max(0, this.pending.size - this.init.session.maxBatch) };
  }

  /** Stop accepting; resolve when the worker has finished (or, after graceMs, aborted) every request. */
  drain(graceMs: number): Promise<void> {
    this.closed = true;
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      this.drainWaiters.push(resolve);
      this.send({ type: 'drain', graceMs });
    });
  }

  /** Free the session and end the thread (after drain). */
  release(): Promise<void> {
    this.closed = true;
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      this.releaseWaiter = resolve;
      this.send({ type: 'release' });
    });
  }

  /**
   * End the thread as a crash would (its requests fail). It is asked to exit between two steps
   * rather than terminated: terminating a thread inside an ONNX Runtime call aborts the whole
   * process (onnxruntime-node 1.30 throws a C++ exception nobody catches).
   */
  crash(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      this.worker.once('exit', () => resolve());
      this.send({ type: 'exit' });
    });
  }

  private send(m: ToEngine): void {
    if (!this.exited) this.worker.postMessage(m);
  }

  private onMessage(m: FromEngine): void {
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
        this.scoring.get(m.id)?.resolve(m.scores);
        this.scoring.delete(m.id);
        break;
      }
      case 'rejected': {
        const s = this.scoring.get(m.id);
        if (s) {
          this.scoring.delete(m.id);
          s.reject(fromWireError(m.error));
          break;
        }
        const p = this.pending.get(m.id);
        if (p) this.settle(m.id, p).channel.fail(fromWireError(m.error));
        break;
      }
      case 'stats':
        this.latest = m.stats;
        break;
      case 'drained':
        for (const w of this.drainWaiters.splice(0)) w();
        break;
      case 'released':
        this.exited = true;
        this.releaseWaiter?.();
        break;
    }
  }

  private settle(id: number, p: Pending): Pending {
    this.pending.delete(id);
    p.detach();
    return p;
  }

  private onExit(reason: string): void {
    if (this.exited) return;
    this.exited = true;
    const error = new VariantUnavailableError(this.init.variant, `the engine of '${this.init.variant}' stopped (${reason}); the request was not finished`);
    for (const [id, p] of this.pending) this.settle(id, p).channel.fail(error);
    for (const s of this.scoring.values()) s.reject(error);
    this.scoring.clear();
    for (const w of this.drainWaiters.splice(0)) w();
    this.releaseWaiter?.();
    this.onUnexpectedExit?.(reason);
  }
}
