import type { Tokenizer } from '../tokenizer/types.ts';
import { ContextLengthError } from './errors.ts';
import { EventChannel } from './event-channel.ts';
import type { DecoderSession } from './decoder-session.ts';
import { type EngineTimes, type Scheduler, QueueFullError, SchedulerClosedError, type SchedulerOptions, type SchedulerStats, type RequestHandle, zeroEngineTimes } from './scheduler-types.ts';
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

/**
 * Continuous batching over one DecoderSession. Each scheduling step: drop aborted or expired
 * requests, admit waiting ones into free KV slots, prefill at most `prefillChunk` prompt tokens
 * (so a long prompt delays running decodes by one chunk, not by its whole length), then run one
 * batched decode step for every sequence that has a token to feed. Requests join and leave between
 * steps; a finished or abandoned request frees its slot at once.
 */
export class BatchScheduler implements Scheduler {
  private readonly waiting: Entry[] = [];
  private readonly running = new Set<Entry>();
  private readonly freeSlots: number[];
  private nextId = 1;
  private looping = false;
  private closed = false;
  private lastBatch = 0;
  private readonly engine: EngineTimes = zeroEngineTimes();
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly session: DecoderSession,
    private readonly tokenizer: Tokenizer,
    private readonly options: SchedulerOptions,
  ) {
    this.freeSlots = Array.from({ length: session.maxBatch }, (_, i) => i);
  }

  submit(request: GenerationRequest): RequestHandle {
    if (this.closed) throw new SchedulerClosedError('the server is shutting down and accepts no new requests');
    const promptLength = request.promptTokens.length;
    if (promptLength === 0) throw new RangeError('the prompt has no tokens');
    if (promptLength >= this.session.maxContext) {
      throw new ContextLengthError(`the prompt has ${promptLength} tokens; the context holds ${this.session.maxContext} (prompt + at least one generated token)`);
    }
    if (!(Number.isInteger(request.maxTokens) && request.maxTokens >= 1)) throw new RangeError(`maxTokens must be a positive integer, got ${request.maxTokens}`);
    // Requests that a free slot will take at the next step are not waiting in the queue.
    if (this.waiting.length - this.freeSlots.length >= this.options.maxQueue) {
      throw new QueueFullError(`the request queue is full (${this.options.maxQueue} waiting)`);
    }
    // Built now so invalid sampling parameters fail the submission, not the batch.
    const sequence = new Sequence(request, this.tokenizer, this.session.spec.vocabSize);
    const entry: Entry = {
      handle: undefined as unknown as RequestHandle,
      request,
      sequence,
      channel: new EventChannel<GenerationEvent>(() => this.kick()),
      deadline: this.options.requestTimeoutMs > 0 ? performance.now() + this.options.requestTimeoutMs : Infinity,
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

  stats(): SchedulerStats {
    let used = 0;
    for (const e of this.running) if (e.slot !== undefined) used += this.session.length(e.slot);
    return {
      running: this.running.size,
      waiting: Math.max(0, this.waiting.length - this.freeSlots.length),
      lastBatchSize: this.lastBatch,
      kvTokensUsed: used,
      kvTokensCapacity: this.session.maxBatch * this.session.maxContext,
      engine: { ...this.engine },
    };
  }

  async drain(graceMs: number): Promise<void> {
    this.closed = true;
    const idle = new Promise<void>((resolve) => {
      if (!this.looping && this.running.size === 0 && this.waiting.length === 0) resolve();
      else this.idleWaiters.push(resolve);
    });
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => (timer = setTimeout(() => resolve('expired'), graceMs)));
    if ((await Promise.race([idle, expired])) === 'expired') {
      for (const e of [...this.waiting, ...this.running]) e.deadline = 0;
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

  private async loop(): Promise<void> {
    try {
      while (this.waiting.length > 0 || this.running.size > 0) {
        this.dropAbandoned();
        this.admit();
        await this.prefillStep();
        await this.decodeStep();
        // Let HTTP handlers run between steps (session runs already yield while they compute).
        await new Promise((r) => setImmediate(r));
      }
    } catch (err) {
      // An engine failure must not leave clients hanging: end every request with an abort.
      for (const e of [...this.waiting, ...this.running]) this.finish(e, 'abort');
      process.emitWarning(`scheduler step failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.looping = false;
      this.lastBatch = 0;
      if (this.waiting.length > 0 || this.running.size > 0) this.kick();
      else for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private dropAbandoned(): void {
    const now = performance.now();
    for (const e of [...this.waiting, ...this.running]) {
      if (e.channel.cancelled || e.request.signal?.aborted) this.finish(e, 'abort');
      else if (now >= e.deadline) this.finish(e, 'timeout');
    }
  }

  private admit(): void {
    while (this.freeSlots.length > 0 && this.waiting.length > 0) {
      const e = this.waiting.shift()!;
      e.slot = this.freeSlots.shift()!;
      this.session.reset(e.slot);
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
      const t0 = performance.now();
      const logits = await this.session.prefillBatch(pieces.map((p) => ({ slot: p.e.slot!, tokens: p.chunk })));
      this.engine.prefillMs += performance.now() - t0;
      this.engine.prefillCalls++;
      pieces.forEach((p, k) => this.prefilled(p.e, p.chunk.length, logits[k]!));
      return;
    }
    for (const { e, chunk } of pieces) {
      const t0 = performance.now();
      const logits = await this.session.prefill(e.slot!, chunk);
      this.engine.prefillMs += performance.now() - t0;
      this.engine.prefillCalls++;
      this.prefilled(e, chunk.length, logits);
    }
  }

  /** Count a prefilled piece; sample the first token once the whole prompt is in the cache. */
  private prefilled(e: Entry, tokens: number, logits: Float32Array): void {
    this.engine.prefillTokens += tokens;
    e.prefilled += tokens;
    if (e.prefilled === e.request.promptTokens.length) this.consume(e, logits);
  }

  private async decodeStep(): Promise<void> {
    const ready = [...this.running].filter((e) => e.nextToken !== undefined && !e.sequence.finished);
    this.lastBatch = ready.length;
    if (ready.length === 0) return;
    const t0 = performance.now();
    const logits = await this.session.decode(ready.map((e) => ({ slot: e.slot!, token: e.nextToken! })));
    this.engine.decodeMs += performance.now() - t0;
    this.engine.decodeSteps++;
    this.engine.decodeRows += ready.length;
    ready.forEach((e, k) => this.consume(e, logits[k]!));
  }

  /** Sample from a step's logits and forward the events; free the slot when the sequence ends. */
  private consume(e: Entry, logits: Float32Array): void {
    if (e.sequence.finished) return;
    for (const ev of e.sequence.step(logits)) e.channel.push(ev);
    if (e.sequence.finished) return this.release(e);
    if (this.session.length(e.slot!) >= this.session.maxContext) return this.finish(e, 'length');
    const generated = e.sequence.generatedTokens;
    e.nextToken = generated[generated.length - 1];
  }

  private finish(e: Entry, reason: FinishReason): void {
    if (!e.sequence.finished) e.channel.push(e.sequence.finish(reason));
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
