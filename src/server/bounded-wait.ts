/**
 * Waiting with a bound, for shutdown steps that must not hang the exit on a part that no longer
 * answers (an engine worker stuck in a native call, a store on a dead volume).
 */

/** Whether `work` settled (fulfilled or rejected) within `ms`; a rejection is passed to `onError`. */
export async function settlesWithin(work: Promise<unknown>, ms: number, onError: (e: unknown) => void): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
    timer.unref();
  });
  const settled = work.then(
    () => true as const,
    (e: unknown) => {
      onError(e);
      return true as const;
    },
  );
  try {
    return await Promise.race([settled, expired]);
  } finally {
    clearTimeout(timer);
  }
}
