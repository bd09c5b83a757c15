/**
 * A single-consumer async queue: the scheduler pushes events as steps complete, the consumer
 * iterates them. When the consumer stops early (break / return), `onCancel` fires so the producer
 * can free what the consumer no longer wants. A producer that can no longer deliver (an engine
 * worker that died) ends the channel with `fail`, and the consumer's next read throws.
 */
export class EventChannel<T> implements AsyncIterable<T> {
  private readonly buffered: T[] = [];
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  private ended = false;
  private failure: { error: unknown } | undefined;
  cancelled = false;

  constructor(private readonly onCancel: () => void) {}

  push(value: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value, done: false });
    } else this.buffered.push(value);
  }

  end(): void {
    this.ended = true;
    this.wakeAtEnd();
  }

  /** End with an error: values already pushed are still delivered, then next() rejects. */
  fail(error: unknown): void {
    if (this.ended) return;
    this.failure = { error };
    this.ended = true;
    this.wakeAtEnd();
  }

  private wakeAtEnd(): void {
    if (!this.waiter || this.buffered.length > 0) return;
    const w = this.waiter;
    this.waiter = undefined;
    if (this.failure) w.reject(this.failure.error);
    else w.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.buffered.length > 0) return Promise.resolve({ value: this.buffered.shift()!, done: false });
        if (this.failure && !this.cancelled) return Promise.reject(this.failure.error);
        if (this.ended || this.cancelled) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
      },
      return: () => {
        if (!this.ended) {
          this.cancelled = true;
          this.onCancel();
        }
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
