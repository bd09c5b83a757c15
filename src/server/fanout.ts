/**
 * One HTTP request → several generations (prompts × n choices) on one variant's scheduler, and
 * their events merged back into one stream tagged by choice index. Everything shares one
 * AbortController tied to the client connection: a client that goes away, or a consumer that stops
 * reading, aborts every generation so their batch slots and KV memory are freed at once.
 */
import type { FinishEvent, GenerationEvent, GenerationRequest } from '../runtime/engine/sequence.ts';
import type { RequestOutcome, ServerMetrics } from './metrics.ts';
import { outcomeOf, toApiError } from './service-errors.ts';
import type { ServedVariant } from '../service/variants/served-variant.ts';

/** One event of one choice. */
export interface ChoiceEvent {
  index: number;
  event: GenerationEvent;
}

export class Fanout {
  private readonly controller = new AbortController();
  private readonly iterators: AsyncIterator<GenerationEvent>[] = [];
  private readonly finishes = new Map<number, FinishEvent>();
  private settled = false;
  private started = false;

  /**
   * Submit every request (their `signal` is replaced by the fan-out's). A rejected submission
   * aborts those already accepted and throws the scheduler's error (the app maps it: 429, 503,
   * 400). From then on the fan-out counts the HTTP request's outcome, exactly once.
   */
  constructor(
    private readonly variant: ServedVariant,
    private readonly metrics: ServerMetrics,
    requests: readonly GenerationRequest[],
    private readonly clientSignal: AbortSignal,
  ) {
    const onClientGone = () => this.controller.abort(new Error('client disconnected'));
    if (clientSignal.aborted) onClientGone();
    else clientSignal.addEventListener('abort', onClientGone, { once: true });
    this.controller.signal.addEventListener('abort', () => clientSignal.removeEventListener('abort', onClientGone), { once: true });
    try {
      for (const r of requests) {
        const handle = variant.scheduler.submit({ ...r, signal: this.controller.signal });
        this.iterators.push(metrics.track(variant.id, handle)[Symbol.asyncIterator]());
      }
    } catch (e) {
      this.controller.abort(e);
      throw e;
    }
  }

  /** Abort every generation of this request (idempotent). */
  abort(reason = 'consumer stopped'): void {
    if (!this.controller.signal.aborted) this.controller.abort(new Error(reason));
    // Abandoned before its events were read (a stream cancelled during the echo): still counted.
    if (!this.started) this.settle(undefined);
  }

  /**
   * Events of all choices as they come, interleaved; each choice ends with its finish event.
   * Returning early (break, stream cancel) aborts the rest.
   */
  async *events(): AsyncGenerator<ChoiceEvent> {
    this.started = true;
    const pending = new Map<number, Promise<{ index: number; result: IteratorResult<GenerationEvent> }>>();
    const pull = (index: number) => {
      pending.set(
        index,
        this.iterators[index]!.next().then((result) => ({ index, result })),
      );
    };
    this.iterators.forEach((_, i) => pull(i));
    let failure: { error: unknown } | undefined;
    try {
      while (pending.size > 0) {
        const { index, result } = await Promise.race(pending.values());
        if (result.done) {
          pending.delete(index);
          continue;
        }
        if (result.value.type === 'finish') this.finishes.set(index, result.value);
        pull(index);
        yield { index, event: result.value };
      }
    } catch (e) {
      failure = { error: e };
      throw e;
    } finally {
      if (pending.size > 0) {
        this.abort();
        // Let every tracked stream see the abort and close, so metrics count it.
        await Promise.allSettled(this.iterators.map((it) => it.return?.()));
      }
      // A failed generation counts as its error says (engine error, stalled or dead engine), never as success or abort.
      this.settle(failure && outcomeOf(toApiError(failure.error, () => undefined)));
    }
  }

  /**
   * Every choice's events collected and built into the response (non-streaming). The response is
   * built as soon as every choice has finished, before the request is counted: a response that
   * cannot be built (e.g. too large for one string) is counted by its error, not as a success.
   */
  async collect<T>(build: (events: GenerationEvent[][]) => T): Promise<T> {
    const out: GenerationEvent[][] = this.iterators.map(() => []);
    const events = this.events();
    let built: { value: T } | undefined;
    for (;;) {
      const r = await events.next();
      if (r.done) break;
      out[r.value.index]!.push(r.value.event);
      if (!built && this.finishes.size === this.iterators.length) {
        try {
          built = { value: build(out) };
        } catch (e) {
          // Into the generator: it aborts what is left and counts the request by this error.
          await events.throw(e);
        }
      }
    }
    return built ? built.value : build(out);
  }

  /** Count the HTTP request once, by how its generations ended. */
  private settle(forced: RequestOutcome | undefined): void {
    if (this.settled) return;
    this.settled = true;
    let outcome: RequestOutcome = forced ?? 'success';
    if (!forced) {
      const reasons = [...this.finishes.values()].map((f) => f.reason);
      if (this.clientSignal.aborted || this.finishes.size < this.iterators.length || reasons.includes('abort')) outcome = 'aborted';
      else if (reasons.includes('timeout')) outcome = 'timeout';
    }
    this.metrics.countRequest(this.variant.id, outcome);
  }
}
