/** What one `push` releases to the client, and whether generation must end here. */
export interface StopPushResult {
  /** Text safe to stream now: it cannot be the start of a stop string. */
  emit: string;
  /** A stop string was found; `emit` is the text before it and nothing more will be emitted. */
  stopped: boolean;
}

/**
 * Finds stop strings in streamed text, where one stop may be split across several tokens. Text
 * that could still turn into a stop (a suffix that is a prefix of some stop string) is held back
 * until the next push decides it; the stop string itself is never emitted (OpenAI semantics).
 */
export class StopMatcher {
  private readonly stops: readonly string[];
  private pending = '';
  private stoppedAt: string | undefined;

  /** Empty strings are ignored (they would match everywhere); no stops = pass-through. */
  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** The stop string that ended generation, once one has. */
  get matched(): string | undefined {
    return this.stoppedAt;
  }

  get stopped(): boolean {
    return this.stoppedAt !== undefined;
  }

  push(text: string): StopPushResult {
    if (this.stoppedAt !== undefined) return { emit: '', stopped: true };
    if (this.stops.length === 0) return { emit: text, stopped: false };
    const pending = this.pending + text;

    // The earliest occurrence wins; at the same position any stop gives the same emitted text.
    let at = -1;
    let which = '';
    for (const stop of this.stops) {
      const i = pending.indexOf(stop);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        which = stop;
      }
    }
    if (at >= 0) {
      this.pending = '';
      this.stoppedAt = which;
      return { emit: pending.slice(0, at), stopped: true };
    }

    const hold = this.heldSuffixLength(pending);
    this.pending = pending.slice(pending.length - hold);
    return { emit: pending.slice(0, pending.length - hold), stopped: false };
  }

  /** Releases whatever is held back, for when generation ends without a stop (EOS, max tokens). */
  flush(): string {
    const rest = this.pending;
    this.pending = '';
    return rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private heldSuffixLength(text: string): number {
    let best = 0;
    for (const stop of this.stops) {
      // A whole stop would already have matched, so only proper prefixes (shorter than stop).
      for (let len = Math.min(stop.length - 1, text.length); len > best; len--) {
        if (text.endsWith(stop.slice(0, len))) {
          best = len;
          break;
        }
      }
    }
    return best;
  }
}
