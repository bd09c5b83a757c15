/**
 * Closed-loop traffic for a fault scenario: `concurrency` workers, each sending its next request as
 * soon as its last one ended, until `stop()` is called, `maxRequests` were sent or `maxMs` passed
 * (whichever first). Every request is itself bounded (client.ts), so `stop()` resolves within one
 * request's wait.
 */
import { type Outcome, send, type RequestSpec } from './client.ts';

export class ClosedLoop {
  readonly outcomes: Outcome[] = [];
  /** Every worker has ended (count or time bound reached, or stopped). */
  finished = false;
  private stopped = false;
  private sent = 0;
  private readonly running: Promise<void>;

  constructor(
    baseUrl: string,
    o: { concurrency: number; maxRequests: number; maxMs: number; request: (i: number) => RequestSpec },
  ) {
    const until = performance.now() + o.maxMs;
    const worker = async () => {
      while (!this.stopped && this.sent < o.maxRequests && performance.now() < until) {
        const outcome = await send(baseUrl, o.request(this.sent++));
        this.outcomes.push(outcome);
        // A server that refuses at once (connection refused, 429/503) is not hammered in a tight loop.
        if (outcome.end === 'connection' || outcome.status >= 400) await new Promise((r) => setTimeout(r, 50));
      }
    };
    this.running = Promise.all(Array.from({ length: o.concurrency }, worker)).then(() => {
      this.finished = true;
    });
  }

  /** Resolves when the loop has ended on its own (count or time bound). */
  async done(): Promise<Outcome[]> {
    await this.running;
    return this.outcomes;
  }

  /** Stop sending; resolves when the requests in flight have ended. */
  async stop(): Promise<Outcome[]> {
    this.stopped = true;
    await this.running;
    return this.outcomes;
  }
}
