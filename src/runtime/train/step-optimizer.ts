import { AdamW, type AdamWOptions, type OptimizedTensor } from './adamw.ts';
import { normOfSums, sumOfSquares } from './grad-clip.ts';

/**
 * What the training loop asks of its optimizer each step: the gradients' global norm (to clip, and
 * to stop on a non-finite one), then either the update or a return to the last good weights. The
 * weights live in the `params` the optimizer was made with; an implementation may replace a
 * tensor's `data` with a new array over the same values (see ThreadedAdamW), so read them from
 * there after every call.
 */
export interface StepOptimizer {
  /** Updates applied so far. */
  readonly steps: number;
  /** The global L2 norm of this step's gradients; the optimizer holds them until update or restore. */
  gradientNorm(grads: ReadonlyMap<string, Float32Array>): Promise<number>;
  /** Apply this step's gradients × `gradScale` at learning rate `lr`; the weights before it become the last good ones. */
  update(lr: number, gradScale: number): Promise<void>;
  /** Put back the last good weights: those before the last update (the start's, before any). */
  restoreLastGood(): Promise<void>;
  close(): Promise<void>;
}

/** AdamW in the calling thread: for models whose update takes milliseconds. */
export class InThreadAdamW implements StepOptimizer {
  private readonly adamw: AdamW;
  private readonly lastGood: Map<string, Float32Array>;
  private grads: ReadonlyMap<string, Float32Array> | undefined;

  constructor(
    private readonly params: ReadonlyMap<string, OptimizedTensor>,
    options: AdamWOptions,
  ) {
    this.adamw = new AdamW(params, options);
    this.lastGood = new Map([...params].map(([name, p]) => [name, Float32Array.from(p.data)]));
  }

  get steps(): number {
    return this.adamw.steps;
  }

  async gradientNorm(grads: ReadonlyMap<string, Float32Array>): Promise<number> {
    this.grads = grads;
    return normOfSums([...this.params.keys()].map((name) => sumOfSquares(gradientOf(grads, name))));
  }

  async update(lr: number, gradScale: number): Promise<void> {
    if (!this.grads) throw new Error('update without gradients: call gradientNorm first');
    this.adamw.step(this.grads, lr, gradScale, this.lastGood);
    this.grads = undefined;
  }

  async restoreLastGood(): Promise<void> {
    for (const [name, p] of this.params) p.data.set(this.lastGood.get(name)!);
    this.grads = undefined;
  }

  async close(): Promise<void> {}
}

export function gradientOf(grads: ReadonlyMap<string, Float32Array>, name: string): Float32Array {
  const g = grads.get(name);
  if (!g) throw new Error(`AdamW: no gradient for '${name}'`);
  return g;
}
