/** Work that must not overlap (manifest reads, writes and applies): each piece starts once the one before it settled. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Run `work` after everything queued before it; its own result or failure. */
  run<T>(work: () => Promise<T> | T): Promise<T> {
    const next = this.tail.then(work, work);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Resolves once everything queued so far has settled. */
  async settled(): Promise<void> {
    await this.tail;
  }
}
