/**
 * AdamW (Loshchilov & Hutter): Adam moments with weight decay decoupled from the gradient,
 * θ ← θ − lr·(m̂ / (√v̂ + ε) + λ·θ). Decay applies to matrices only (projections, embeddings, LoRA
 * adapters), not to the RMSNorm gains, as is usual for LLaMA fine-tuning. Moments are float32
 * (2 × the trainable parameters of memory); arithmetic is in doubles, element by element, so an
 * update is the same bit for bit whichever thread applies it to a tensor.
 */
export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay: number;
}

/** A trainable tensor: its values (updated in place) and whether weight decay applies to it. */
export interface OptimizedTensor {
  data: Float32Array;
  decay: boolean;
}

/** What one update needs besides the arrays: the same for every tensor of a step. */
export interface AdamWStep {
  lr: number;
  /** Multiplies every gradient (clipping). */
  gradScale: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Bias corrections 1 / (1 − β^t). */
  c1: number;
  c2: number;
  weightDecay: number;
}

/** The constants of update number `t` (1-based). */
export function adamwStep(options: AdamWOptions, t: number, lr: number, gradScale: number): AdamWStep {
  const beta1 = options.beta1 ?? 0.9;
  const beta2 = options.beta2 ?? 0.95;
  return { lr, gradScale, beta1, beta2, eps: options.eps ?? 1e-8, c1: 1 / (1 - Math.pow(beta1, t)), c2: 1 / (1 - Math.pow(beta2, t)), weightDecay: options.weightDecay };
}

/**
 * Update one tensor in place: its weights `w`, moments `m` and `v`, from gradient `g`. With
 * `before`, the weights it read are written there in the same pass (the training loop's last good
 * weights, without a copy of their own).
 */
export function updateTensor(s: AdamWStep, decays: boolean, w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, before?: Float32Array): void {
  const { beta1: b1, beta2: b2, eps, gradScale } = s;
  const a1 = 1 - b1;
  const a2 = 1 - b2;
  // lr·m̂/(√v̂ + ε) with the bias corrections folded into two constants: one multiply fewer per element.
  const stepSize = s.lr * s.c1;
  const rootC2 = Math.sqrt(s.c2);
  const decay = decays ? s.lr * s.weightDecay : 0;
  for (let i = 0; i < w.length; i++) {
    const gi = g[i]! * gradScale;
    const mi = b1 * m[i]! + a1 * gi;
    const vi = b2 * v[i]! + a2 * gi * gi;
    const wi = w[i]!;
    if (before) before[i] = wi;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - (stepSize * mi) / (Math.sqrt(vi) * rootC2 + eps) - decay * wi;
  }
}

/** AdamW over a set of tensors in the calling thread (`threaded-adamw.ts` spreads the same updates over worker threads). */
export class AdamW {
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();
  private t = 0;

  constructor(
    private readonly params: ReadonlyMap<string, OptimizedTensor>,
    private readonly options: AdamWOptions,
  ) {
    for (const [name, p] of params) {
      this.m.set(name, new Float32Array(p.data.length));
      this.v.set(name, new Float32Array(p.data.length));
    }
  }

  /** Updates done so far. */
  get steps(): number {
    return this.t;
  }

  /**
   * One update with learning rate `lr`; `gradScale` multiplies every gradient (clipping). With
   * `previous`, each tensor's values before the update are written there in the same pass.
   */
  step(grads: ReadonlyMap<string, Float32Array>, lr: number, gradScale = 1, previous?: ReadonlyMap<string, Float32Array>): void {
    this.t++;
    const s = adamwStep(this.options, this.t, lr, gradScale);
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) throw new Error(`AdamW: no gradient for '${name}'`);
      updateTensor(s, p.decay, p.data, g, this.m.get(name)!, this.v.get(name)!, previous?.get(name));
    }
  }
}
