/**
 * One sequence's grammar state: an xgrammar GrammarMatcher that says which tokens may come next
 * (a bitmask over the vocabulary) and advances with each sampled token. It implements the
 * TokenConstraint the engine's sampler applies before penalties, temperature and truncation.
 */
import type { GrammarMatcher } from '@mlc-ai/web-xgrammar';
import type { TokenConstraint } from './token-constraint.ts';
import { GrammarError } from './grammar-spec.ts';

/** The raw matcher behind the package's wrapper: its mask call without the wrapper's await. */
interface MatcherHandle {
  GetNextTokenBitmask(vocabSize: number): { size(): number; get(i: number): number; delete(): void };
}

export class GrammarConstraint implements TokenConstraint {
  /** The mask for the matcher's current state, once computed. */
  private next: Int32Array | undefined;
  /** Counts accepted tokens: a mask computed for an older state is dropped. */
  private version = 0;
  private inFlight: Promise<unknown> = Promise.resolve();
  private released = false;
  private dead = false;

  constructor(
    private readonly matcher: GrammarMatcher,
    private readonly vocabSize: number,
  ) {
    this.prefetch();
  }

  /**
   * The package computes masks behind an await; the engine samples synchronously. So the mask for
   * the next step is asked for as soon as a token is accepted: it is ready long before the model
   * step that needs it returns (mask() computes it on the spot otherwise).
   */
  private prefetch(): void {
    const version = this.version;
    this.inFlight = this.matcher.getNextTokenBitmask().then(
      (mask) => {
        if (version === this.version && !this.released) this.next = mask;
      },
      () => undefined,
    );
  }

  get terminated(): boolean {
    return this.released || this.matcher.isTerminated();
  }

  mask(): Int32Array {
    if (this.dead) throw new GrammarError('the grammar was abandoned after an earlier error');
    const mask = (this.next ??= this.maskNow());
    if (!mask.some((word) => word !== 0)) {
      this.dead = true;
      throw new GrammarError("the grammar allows no token of this model's vocabulary here: the model cannot write the text the grammar requires next (change the grammar, or use a model whose vocabulary can write it)");
    }
    return mask;
  }

  accept(token: number): void {
    this.version++;
    this.next = undefined;
    if (!this.matcher.acceptToken(token)) throw new GrammarError(`token ${token} was sampled outside the grammar's mask`);
    if (!this.matcher.isTerminated()) this.prefetch();
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    // After a mask request still in flight, which reads the matcher.
    void this.inFlight.finally(() => this.matcher.dispose());
  }

  /** The mask computed synchronously: one call into the module per 32 tokens to copy it out. */
  private maskNow(): Int32Array {
    const handle = (this.matcher as unknown as { handle: MatcherHandle }).handle;
    const vector = handle.GetNextTokenBitmask(this.vocabSize);
    try {
      const out = new Int32Array(vector.size());
      for (let i = 0; i < out.length; i++) out[i] = vector.get(i);
      return out;
    } finally {
      vector.delete();
    }
  }
}
