import { type ModelSpec, weightName } from '../model/spec.ts';
import type { Tensor, Weights } from '../model/tensor.ts';
import { Xoshiro128ss } from '../engine/rng.ts';
import { RecoveryInputError } from './errors.ts';

/**
 * LoRA: a projection W [out, in] is trained as W + (α/r)·B·A with A [r, in] and B [out, r] the
 * only trainable tensors; W stays frozen. B starts at zero (the model starts as it is), A small and
 * random. `mergeLora` folds the adapters back into W, so the served model has the pruned shape and
 * costs exactly what it did before recovery.
 */
export const loraTargets = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
export type LoraTarget = (typeof loraTargets)[number];

export interface LoraConfig {
  rank: number;
  alpha: number;
  targets: readonly LoraTarget[];
}

/** One adapted projection: the frozen weight and the names of its two adapter tensors. */
export interface LoraSite {
  weight: string;
  out: number;
  in: number;
  a: string;
  b: string;
}

export function loraAdapterNames(weight: string): { a: string; b: string } {
  return { a: `lora.${weight}.A`, b: `lora.${weight}.B` };
}

/** Every projection of `spec` that `targets` selects (layers without the sub-block have none). */
export function loraSites(spec: ModelSpec, targets: readonly LoraTarget[]): LoraSite[] {
  const H = spec.hidden;
  const sites: LoraSite[] = [];
  spec.layers.forEach((l, i) => {
    const shapes: Record<LoraTarget, [string, number, number] | undefined> = {
      q: l.heads > 0 ? [weightName.q(i), l.heads * l.headDim, H] : undefined,
      k: l.heads > 0 ? [weightName.k(i), l.kvHeads * l.headDim, H] : undefined,
      v: l.heads > 0 ? [weightName.v(i), l.kvHeads * l.headDim, H] : undefined,
      o: l.heads > 0 ? [weightName.o(i), H, l.heads * l.headDim] : undefined,
      gate: l.ffn > 0 ? [weightName.gate(i), l.ffn, H] : undefined,
      up: l.ffn > 0 ? [weightName.up(i), l.ffn, H] : undefined,
      down: l.ffn > 0 ? [weightName.down(i), H, l.ffn] : undefined,
    };
    for (const t of targets) {
      const s = shapes[t];
      if (s) sites.push({ weight: s[0], out: s[1], in: s[2], ...loraAdapterNames(s[0]) });
    }
  });
  return sites;
}

/**
 * Checks a LoRA configuration against a model: rank a positive integer no larger than the narrowest
 * adapted projection (beyond it the adapter is no longer low-rank), finite α, known targets.
 */
export function validateLoraConfig(spec: ModelSpec, config: LoraConfig): void {
  const { rank, alpha, targets } = config;
  if (!Number.isInteger(rank) || rank <= 0) throw new RecoveryInputError(`LoRA rank must be a positive integer, got ${rank}`);
  if (!Number.isFinite(alpha) || alpha <= 0) throw new RecoveryInputError(`LoRA alpha must be a positive finite number, got ${alpha}`);
  if (targets.length === 0) throw new RecoveryInputError(`LoRA needs at least one target projection (${loraTargets.join(', ')})`);
  for (const t of targets) if (!loraTargets.includes(t)) throw new RecoveryInputError(`unknown LoRA target '${String(t)}' (expected ${loraTargets.join(', ')})`);
  const sites = loraSites(spec, targets);
  if (sites.length === 0) throw new RecoveryInputError(`the model has no ${targets.join('/')} projections to adapt`);
  const narrowest = sites.reduce((m, s) => Math.min(m, s.out, s.in), Infinity);
  if (rank > narrowest) throw new RecoveryInputError(`LoRA rank ${rank} exceeds the narrowest adapted layer width (${narrowest})`);
}

/** Initial adapters: A uniform with std 1/√in (seeded), B zero, so W + (α/r)·B·A = W at step 0. */
export function initLoraAdapters(spec: ModelSpec, config: LoraConfig, seed: number): Weights {
  const rng = new Xoshiro128ss(seed);
  const adapters: Weights = new Map();
  for (const s of loraSites(spec, config.targets)) {
    const a = new Float32Array(config.rank * s.in);
    const bound = Math.sqrt(3 / s.in);
    for (let i = 0; i < a.length; i++) a[i] = (2 * rng.nextFloat() - 1) * bound;
    adapters.set(s.a, { shape: [config.rank, s.in], data: a });
    adapters.set(s.b, { shape: [s.out, config.rank], data: new Float32Array(s.out * config.rank) });
  }
  return adapters;
}

/** W' = W + (α/r)·B·A for every site; returns new weights (the input map is not changed). */
export function mergeLora(spec: ModelSpec, weights: Weights, adapters: Weights, config: LoraConfig): Weights {
  const merged: Weights = new Map(weights);
  const s = config.alpha / config.rank;
  const r = config.rank;
  for (const site of loraSites(spec, config.targets)) {
    const w = weights.get(site.weight);
    const a = adapters.get(site.a)?.data;
    const b = adapters.get(site.b)?.data;
    if (!w || !a || !b) throw new Error(`LoRA merge: '${site.weight}' or its adapters are missing`);
    const out = Float32Array.from(w.data);
    for (let o = 0; o < site.out; o++) {
      for (let k = 0; k < r; k++) {
        const bk = s * b[o * r + k]!;
        if (bk === 0) continue;
        const row = o * site.in;
        const aRow = k * site.in;
        for (let i = 0; i < site.in; i++) out[row + i]! += bk * a[aRow + i]!;
      }
    }
    merged.set(site.weight, { shape: w.shape, data: out } satisfies Tensor);
  }
  return merged;
}
