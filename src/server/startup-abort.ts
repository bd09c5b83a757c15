/**
 * Stopping a start-up that a signal interrupted: `startServer` checks its AbortSignal between steps
 * (load, engine start, listen, probe, store restore, start-up prune), releases what it started and
 * rejects with StartupAbortedError, which `mop serve` reports as a clean exit.
 */

/** Start-up stopped because its AbortSignal fired; whatever it had started is released. */
export class StartupAbortedError extends Error {
  constructor(readonly step: string) {
    super(`start-up stopped before ${step}: shutdown was asked for`);
    this.name = 'StartupAbortedError';
  }
}

/**
 * `work`, or a StartupAbortedError as soon as `signal` fires. Only for steps that hold nothing to
 * release (reading files, probing the device): the step itself runs on and its result is dropped.
 */
export function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined, step: string): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(new StartupAbortedError(step));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new StartupAbortedError(step));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
