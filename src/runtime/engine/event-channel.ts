/**
 * A single-consumer async queue: the scheduler pushes events as steps complete, the consumer
 * iterates them. When the consumer stops early (break / return), `onCancel` fires so the producer
 * can free what the consumer no longer wants.
 */
export class EventChannel<T> implements AsyncIterable<T> {
  private readonly buffered: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private ended = false;
  cancelled = false;

  constructor(private readonly onCancel: () => void) {}

  push(value: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value, done: false });
    } else this.buffered.push(value);
  }

  end(): void {
    this.ended = true;
    if (this.waiter && this.buffered.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.buffered.length > 0) return Promise.resolve({ value: this.buffered.shift()!, done: false });
        if (this.ended || this.cancelled) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.waiter = resolve));
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
