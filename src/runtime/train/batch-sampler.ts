import { Xoshiro128ss } from '../engine/rng.ts';

/**
 * Training batches from token windows: each row trains `seqLen` positions, position p predicting
 * token p + 1 of its window. A window shorter than seqLen + 1 tokens is padded and its padding
 * gets loss weight 0; a longer one is cut to seqLen + 1. Windows are visited in a seeded shuffle,
 * reshuffled each epoch, so a seed fixes the whole data order.
 */
export interface TrainingBatch {
  rows: number;
  seqLen: number;
  /** rows × seqLen input ids. */
  ids: BigInt64Array;
  /** rows × seqLen next-token ids (0 where padded). */
  targets: BigInt64Array;
  /** rows × seqLen loss weights (1 trained, 0 padding). */
  weights: Float32Array;
  /** Which windows the rows are (indices into the sampler's windows). */
  windows: number[];
  /** Positions with weight 1. */
  tokens: number;
}

export class BatchSampler {
  private readonly rng: Xoshiro128ss;
  private order: number[] = [];
  private at = 0;

  constructor(
    private readonly windows: readonly Int32Array[],
    readonly rows: number,
    readonly seqLen: number,
    seed: number,
    /** Per window, 1 where a token is a training target (e.g. assistant turns only); default: every token. */
    private readonly trainMasks?: readonly Uint8Array[],
  ) {
    if (windows.length === 0) throw new Error('BatchSampler: no windows');
    this.rng = new Xoshiro128ss(seed);
  }

  next(): TrainingBatch {
    const { rows, seqLen: T } = this;
    const ids = new BigInt64Array(rows * T);
    const targets = new BigInt64Array(rows * T);
    const weights = new Float32Array(rows * T);
    const chosen: number[] = [];
    let tokens = 0;
    for (let r = 0; r < rows; r++) {
      const index = this.nextWindow();
      chosen.push(index);
      const w = this.windows[index]!;
      const mask = this.trainMasks?.[index];
      for (let p = 0; p < T && p + 1 < w.length; p++) {
        ids[r * T + p] = BigInt(w[p]!);
        targets[r * T + p] = BigInt(w[p + 1]!);
        const trains = mask === undefined || mask[p + 1] === 1;
        weights[r * T + p] = trains ? 1 : 0;
        if (trains) tokens++;
      }
    }
    return { rows, seqLen: T, ids, targets, weights, windows: chosen, tokens };
  }

  private nextWindow(): number {
    if (this.at >= this.order.length) {
      this.order = Array.from({ length: this.windows.length }, (_, i) => i);
      for (let i = this.order.length - 1; i > 0; i--) {
        const j = Math.floor(this.rng.nextFloat() * (i + 1));
        [this.order[i], this.order[j]] = [this.order[j]!, this.order[i]!];
      }
      this.at = 0;
    }
    return this.order[this.at++]!;
  }
}
