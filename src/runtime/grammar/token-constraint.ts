/**
 * What the engine's sampler asks of a constraint on a sequence's output (structured outputs: a
 * grammar, a JSON schema). The engine depends on this contract, never on xgrammar.
 */

/**
 * Restricts which tokens a sequence may sample next. One per sequence; the sampler applies its
 * mask before penalties, temperature, top-k, top-p and min-p, so those only ever choose among
 * allowed tokens.
 */
export interface TokenConstraint {
  /**
   * Allowed token ids for the next step: bit (id & 31) of word (id >> 5). Throws (a GrammarError)
   * when no token is allowed: the constraint cannot be met with this vocabulary.
   */
  mask(): Int32Array;
  /** Advance past the sampled token. */
  accept(token: number): void;
  /** The constrained text is complete: the sequence ends. */
  readonly terminated: boolean;
  /** Free what it holds (the sequence is over). */
  release(): void;
}

