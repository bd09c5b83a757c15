import type { Tokenizer } from '../tokenizer/types.ts';
import { admitOrThrow, type HeldRequests, waitingRequests } from './admission.ts';
import { ContextLengthError, EngineStepError, InvalidRequestError, RequestAbortedError, RequestTimeoutError } from './errors.ts';
import { EventChannel } from './event-channel.ts';
import type { DecoderSession } from './decoder-session.ts';
import { SlotPrefixCache } from './prefix-cache-slots.ts';
import type { PieceScorer, PromptScores, ScoreRun } from './prompt-scores.ts';
import { type EngineTimes, type Scheduler, SchedulerClosedError, type SchedulerOptions, type SchedulerStats, type RequestHandle, zeroEngineTimes } from './scheduler-types.ts';
import { type FinishReason, type GenerationEvent, type GenerationRequest, Sequence } from './sequence.ts';

/** A request's life inside the scheduler. */
interface Entry {
  handle: RequestHandle;
  request: GenerationRequest;
  sequence: Sequence;
  channel: EventChannel<GenerationEvent>;
  deadline: number;
  slot: number | undefined;
  /** Prompt tokens already in the KV cache. */
  prefilled: number;
  /** The sampled token to feed in the next decode step. */
  nextToken: number | undefined;
}

/** A prompt-scoring request (echo + logprobs): queued with the generations, run piece by piece. */
interface ScoreEntry {
  tokens: readonly number[];
  topN: number;
  signal: AbortSignal | undefined;
  deadline: number;
  resolve: (scores: PromptScores) => void;
  reject: (error: Error) => void;
  /** Set once its first piece is about to run. */
  run: ScoreRun | undefined;
}

/**
 * Continuous batching over one DecoderSession. Each scheduling step: drop aborted or expired
 * requests, admit waiting ones into free KV slots, prefill at most `prefillChunk` prompt tokens
 * (so a long prompt delays running decodes by one chunk, not by its whole length), then run one
 * batched decode step for every sequence that has a token to feed. Requests join and leave between
 * steps; a finished or abandoned request frees its slot at once.
 *
 * Prompt scorings (given a `scorer`) share the queue limit, deadline, abort and drain of
 * generations: one runs at a time, one piece per scheduling step, so decodes beside it wait for a
 * piece at most. A failed step ends every request it carried with an EngineStepError.
 */
export class BatchScheduler implements Scheduler {
  private readonly waiting: Entry[] = [];
  private readonly running = new Set<Entry>();
  /** Scorings in arrival order; the first one runs. */
  private readonly scorings: ScoreEntry[] = [];
  /** performance.now() when the session call in progress began; undefined between calls. */
  private busySince: number | undefined;
  private readonly freeSlots: number[];
  private nextId = 1;
  private looping = false;
  private closed = false;
  private lastBatch = 0;
  private readonly engine: EngineTimes = zeroEngineTimes();
  private idleWaiters: (() => void)[] = [];
  /** Prompt KV reused across requests; undefined when off or the session's cache cannot be copied. */
  private readonly prefixCache: SlotPrefixCache | undefined;

  constructor(
    private readonly session: DecoderSession,
    private readonly tokenizer: Tokenizer,
    private readonly options: SchedulerOptions,
    /** Prompt scoring (echo + logprobs); without it, score() refuses. */
    private readonly scorer?: PieceScorer,
  ) {
    this.freeSlots = Array.from({ length: session.maxBatch }, (_, i) => i);
    this.prefixCache = SlotPrefixCache.over(session.slotKv, options.prefixCacheMb);
  }

  private held(): HeldRequests {
    return { generations: this.waiting.length + this.running.size, scorings: this.scorings.length };
  }

  submit(request: GenerationRequest): RequestHandle {
    if (this.closed) throw new SchedulerClosedError('the server is shutting down and accepts no new requests');
    const promptLength = request.promptTokens.length;
    if (promptLength === 0) throw new InvalidRequestError('the prompt has no tokens');
    if (promptLength >= this.session.maxContext) {
      throw new ContextLengthError(`the prompt has ${promptLength} tokens; the context holds ${this.session.maxContext} (prompt + at least one generated token)`);
    }
    if (!(Number.isInteger(request.maxTokens) && request.maxTokens >= 1)) throw new InvalidRequestError(`maxTokens must be a positive integer, got ${request.maxTokens}`);
    admitOrThrow('generations', this.held(), this.session.maxBatch, this.options.maxQueue);
    // Built now so invalid sampling parameters fail the submission, not the batch.
    const sequence = new Sequence(request, this.tokenizer, this.session.spec.vocabSize);
    const entry: Entry = {
      handle: undefined as unknown as RequestHandle,
      request,
      sequence,
      channel: new EventChannel<GenerationEvent>(() => this.kick()),
      deadline: this.deadline(),
      slot: undefined,
      prefilled: 0,
      nextToken: undefined,
    };
    entry.handle = { id: this.nextId++, submittedAt: performance.now(), admittedAt: undefined, events: entry.channel };
    request.signal?.addEventListener('abort', () => this.kick(), { once: true });
    this.waiting.push(entry);
    this.kick();
    return entry.handle;
  }

  /**
   * Log-probabilities of a prompt's tokens, admitted like a generation (QueueFullError,
   * SchedulerClosedError, ContextLengthError, RangeError are thrown at once). The promise rejects
   * with RequestAbortedError when `signal` aborts, RequestTimeoutError past the deadline.
   */
  score(tokens: readonly number[], topN: number, signal?: AbortSignal): Promise<PromptScores> {
    if (this.closed) throw new SchedulerClosedError('the server is shutting down and accepts no new requests');
    if (!this.scorer) throw new RangeError('this scheduler has no prompt scorer');
    this.scorer.check(tokens);
    admitOrThrow('scorings', this.held(), this.session.maxBatch, this.options.maxQueue);
    return new Promise((resolve, reject) => {
      this.scorings.push({ tokens, topN, signal, deadline: this.deadline(), resolve, reject, run: undefined });
      signal?.addEventListener('abort', () => this.kick(), { once: true });
      this.kick();
    });
  }

  /** How long the session call in progress has run (0 between calls): a watchdog's stall signal. */
  busyMs(now = performance.now()): number {
    return this.busySince === undefined ? 0 : now - this.busySince;
  }

  private deadline(): number {
    return this.options.requestTimeoutMs > 0 ? performance.now() + this.options.requestTimeoutMs : Infinity;
  }

  stats(): SchedulerStats {
    let used = 0;
    for (const e of this.running) if (e.slot !== undefined) used += this.session.length(e.slot);
    return {
      running: this.running.size,
      waiting: waitingRequests(this.held(), this.session.maxBatch),
      lastBatchSize: this.lastBatch,
      kvTokensUsed: used,
      kvTokensCapacity: this.session.maxBatch * this.session.maxContext,
      engine: { ...this.engine },
      ...(this.prefixCache && { prefixCache: this.prefixCache.stats() }),
    };
  }

  async drain(graceMs: number): Promise<void> {
    this.closed = true;
    const idle = new Promise<void>((resolve) => {
      if (!this.looping && !this.hasWork()) resolve();
      else this.idleWaiters.push(resolve);
    });
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => (timer = setTimeout(() => resolve('expired'), graceMs)));
    if ((await Promise.race([idle, expired])) === 'expired') {
      for (const e of [...this.waiting, ...this.running, ...this.scorings]) e.deadline = 0;
      this.kick();
      await idle;
    }
    clearTimeout(timer);
  }

  /** Start the scheduling loop if it is not running. */
  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    setImmediate(() => void this.loop());
  }

  private hasWork(): boolean {
    return this.waiting.length > 0 || this.running.size > 0 || this.scorings.length > 0;
  }

  private async loop(): Promise<void> {
    try {
      while (this.hasWork()) {
        this.dropAbandoned();
        this.admit();
        await this.scoreStep();
        await this.prefillStep();
        await this.decodeStep();
        // Let HTTP handlers run between steps (session runs already yield while they compute).
        await new Promise((r) => setImmediate(r));
      }
    } catch (err) {
      // A failed step must not leave clients hanging, nor look like a success or an abort: every
      // request it carried (and every waiting one, whose session is in doubt) ends with the error.
      const error = new EngineStepError(`a model step failed: ${err instanceof Error ? err.message : String(err)}`);
      for (const e of [...this.waiting, ...this.running]) this.fail(e, error);
      for (const s of this.scorings.splice(0)) this.settleScore(s, error);
      this.onStepFailure?.(error);
    } finally {
      this.busySince = undefined;
      this.looping = false;
      this.lastBatch = 0;
      if (this.hasWork()) this.kick();
      else for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Told once per failed step (after its requests were failed): the worker reports it. */
  onStepFailure: ((error: EngineStepError) => void) | undefined;

  private dropAbandoned(): void {
    const now = performance.now();
    for (const e of [...this.waiting, ...this.running]) {
      if (e.channel.cancelled || e.request.signal?.aborted) this.finish(e, 'abort');
      else if (now >= e.deadline) this.finish(e, 'timeout');
    }
    for (const s of [...this.scorings]) {
      if (s.signal?.aborted) this.settleScore(s, new RequestAbortedError('the client went away before the prompt was scored'));
      else if (now >= s.deadline) this.settleScore(s, new RequestTimeoutError(`the prompt was not scored within the request deadline (${this.options.requestTimeoutMs} ms)`));
    }
  }

  /** One piece of the oldest scoring. A scoring session that fails fails that request only. */
  private async scoreStep(): Promise<void> {
    const s = this.scorings[0];
    if (!s || !this.scorer) return;
    try {
      // Building the scoring session on first use is not a model step: only the piece is timed.
      s.run ??= await this.scorer.begin(s.tokens, s.topN);
      this.busySince = performance.now();
      const scores = await s.run.step();
      if (scores) this.settleScore(s, scores);
    } catch (err) {
      this.settleScore(s, err instanceof Error && err.name !== 'Error' ? err : new EngineStepError(`prompt scoring failed: ${err instanceof Error ? err.message : String(err)}`));
    } finally {
      this.busySince = undefined;
    }
  }

  /** Resolve or reject a scoring and take it out of the queue, freeing the scoring session's slot. */
  private settleScore(s: ScoreEntry, outcome: PromptScores | Error): void {
    const at = this.scorings.indexOf(s);
    if (at >= 0) this.scorings.splice(at, 1);
    s.run?.close();
    s.run = undefined;
    if (outcome instanceof Error) s.reject(outcome);
    else s.resolve(outcome);
  }

  private admit(): void {
    while (this.freeSlots.length > 0 && this.waiting.length > 0) {
      const e = this.waiting.shift()!;
      e.slot = this.freeSlots.shift()!;
      this.session.reset(e.slot);
      // The cached start of the prompt is copied in; the rest is prefilled after it.
      e.prefilled = this.prefixCache?.restore(e.slot, e.request.promptTokens) ?? 0;
      e.handle.admittedAt = performance.now();
      this.running.add(e);
    }
  }

  /**
   * Prefill up to `prefillChunk` prompt tokens, oldest request first. Two or more pieces go to the
   * session in one prefillBatch call (it runs fresh prompts together and the rest one by one);
   * a lone piece, or a session without prefillBatch, is prefilled piece by piece.
   */
  private async prefillStep(): Promise<void> {
    let budget = this.options.prefillChunk;
    const pieces: { e: Entry; chunk: number[] }[] = [];
    for (const e of this.running) {
      if (budget <= 0) break;
      const prompt = e.request.promptTokens;
      if (e.prefilled >= prompt.length || e.sequence.finished) continue;
      const chunk = prompt.slice(e.prefilled, e.prefilled + budget);
      pieces.push({ e, chunk });
      budget -= chunk.length;
    }
    if (pieces.length >= 2 && this.session.prefillBatch) {
      const t0 = (this.busySince = performance.now());
      const logits = await this.session.prefillBatch(pieces.map((p) => ({ slot: p.e.slot!, tokens: p.chunk })));
      this.busySince = undefined;
      this.engine.prefillMs += performance.now() - t0;
      this.engine.prefillCalls++;
      pieces.forEach((p, k) => this.prefilled(p.e, p.chunk.length, logits[k]!));
      return;
    }
    for (const { e, chunk } of pieces) {
      const t0 = (this.busySince = performance.now());
      const logits = await this.session.prefill(e.slot!, chunk);
      this.busySince = undefined;
      this.engine.prefillMs += performance.now() - t0;
      this.engine.prefillCalls++;
      this.prefilled(e, chunk.length, logits);
    }
  }

  /** Count a prefilled piece; sample the first token once the whole prompt is in the cache. */
  private prefilled(e: Entry, tokens: number, logits: Float32Array): void {
    this.engine.prefillTokens += tokens;
    e.prefilled += tokens;
    if (e.prefilled !== e.request.promptTokens.length) return;
    this.prefixCache?.remember(e.slot!, e.request.promptTokens);
    this.consume(e, logits);
  }

  private async decodeStep(): Promise<void> {
    const ready = [...this.running].filter((e) => e.nextToken !== undefined && !e.sequence.finished);
    this.lastBatch = ready.length;
    if (ready.length === 0) return;
    const t0 = (this.busySince = performance.now());
    const logits = await this.session.decode(ready.map((e) => ({ slot: e.slot!, token: e.nextToken! })));
    this.busySince = undefined;
    this.engine.decodeMs += performance.now() - t0;
    this.engine.decodeSteps++;
    this.engine.decodeRows += ready.length;
    ready.forEach((e, k) => this.consume(e, logits[k]!));
  }

  /** Sample from a step's logits and forward the events; free the slot when the sequence ends. */
  private consume(e: Entry, logits: Float32Array): void {
    if (e.sequence.finished) return;
    let events: GenerationEvent[];
    try {
      events = e.sequence.step(logits);
    } catch (err) {
      // A constraint that cannot be met (its grammar allows no token) ends its own request only.
      return this.fail(e, err instanceof Error ? err : new Error(String(err)));
    }
    for (const ev of events) e.channel.push(ev);
    if (e.sequence.finished) return this.release(e);
    if (this.session.length(e.slot!) >= this.session.maxContext) return this.finish(e, 'length');
    const generated = e.sequence.generatedTokens;
    e.nextToken = generated[generated.length - 1];
  }

  private finish(e: Entry, reason: FinishReason): void {
    if (!e.sequence.finished) e.channel.push(e.sequence.finish(reason));
    this.release(e);
  }

  /** End a request with an error instead of a finish event (tokens already sent stay sent). */
  private fail(e: Entry, error: Error): void {
    // Finished quietly, so what the sequence holds (its constraint) is released.
    if (!e.sequence.finished) e.sequence.finish('abort');
    e.channel.fail(error);
    this.release(e);
  }

  private release(e: Entry): void {
    e.channel.end();
    const w = this.waiting.indexOf(e);
    if (w >= 0) this.waiting.splice(w, 1);
    if (this.running.delete(e) && e.slot !== undefined) {
      this.session.reset(e.slot);
      // Lowest slot first keeps the decode batch's rows [0, highest] dense.
      this.freeSlots.push(e.slot);
      this.freeSlots.sort((a, b) => a - b);
      e.slot = undefined;
    }
  }
}
