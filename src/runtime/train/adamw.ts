/**
 * AdamW (Loshchilov & Hutter): Adam moments with weight decay decoupled from the gradient,
 * θ ← θ − lr·(m̂ / (√v̂ + ε) + λ·θ). Decay applies to matrices only (projections, embeddings, LoRA
 * adapters), not to the RMSNorm gains, as is usual for LLaMA fine-tuning. Moments are float32
 * (2 × the trainable parameters of memory); arithmetic is in doubles, element by element in a
 * fixed order, so a run is bit-for-bit repeatable.
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

export class AdamW {
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();
  private t = 0;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;

  constructor(
    private readonly params: ReadonlyMap<string, OptimizedTensor>,
    private readonly options: AdamWOptions,
  ) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.95;
    this.eps = options.eps ?? 1e-8;
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
   * `previous`, each tensor's values before the update are written there in the same pass (the
   * training loop's last good weights, without a copy of its own).
   */
  step(grads: ReadonlyMap<string, Float32Array>, lr: number, gradScale = 1, previous?: ReadonlyMap<string, Float32Array>): void {
    this.t++;
    const { beta1: b1, beta2: b2, eps } = this;
    const c1 = 1 / (1 - Math.pow(b1, this.t));
    const c2 = 1 / (1 - Math.pow(b2, this.t));
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) throw new Error(`AdamW: no gradient for '${name}'`);
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      const w = p.data;
      const decay = p.decay ? lr * this.options.weightDecay : 0;
      const before = previous?.get(name);
      for (let i = 0; i < w.length; i++) {
        const gi = g[i]! * gradScale;
        const mi = b1 * m[i]! + (1 - b1) * gi;
        const vi = b2 * v[i]! + (1 - b2) * gi * gi;
        const wi = w[i]!;
        if (before) before[i] = wi;
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - lr * ((mi * c1) / (Math.sqrt(vi * c2) + eps)) - decay * wi;
      }
    }
  }
}
