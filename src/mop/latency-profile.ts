import os from 'node:os';
import { cpuTarget, describeTarget, type ExecutionTarget } from '../runtime/device/device.ts';
import { timeDecodeInterleaved } from '../runtime/engine/decode-timing.ts';
import type { LayerSpec, ModelSpec } from '../runtime/model/spec.ts';
import { syntheticWeights } from '../runtime/model/synthetic.ts';
import { type LatencyCoefficients, latencyCost } from './prune-cost.ts';
import { layerParams } from './pruning-plan.ts';

/** Vocabulary of the layer probes (the head probe keeps the model's). */
const PROBE_VOCAB = 256;

/**
 * The serving engine's decode-step time, per sub-block, for latency-aware pruning: measured with
 * the engine itself (ModelSession, the serving device, weight type and threads) on probe models of
 * the model's own hidden size, vocabulary and head shape, with random weights (time does not depend
 * on the values). Two widths per sub-block type give a fixed cost and a cost per parameter:
 *
 *   head      one empty layer: embedding gather, final norm, LM head, per-run overhead
 *   small-head the same with a 256-token vocabulary: what the layer probes stand on
 *   attn      L (≤ 8) attention-only layers with all KV groups / with a quarter of them
 *   mlp       L MLP-only layers with the full MLP width / a quarter of it
 *
 * per layer = (probe − small-head) / L; the line through the two widths is the sub-block's model.
 */
export interface LatencyProfile {
  coefficients: LatencyCoefficients;
  /** Step time of what pruning never removes (the head probe), µs. */
  baseUs: number;
  /** How it was measured, for the prune report. */
  measured: {
    target: string;
    threads: number | undefined;
    batch: number;
    contextTokens: number;
    layersPerProbe: number;
    probes: { name: string; layers: LayerSpec[]; medianMs: number; steps: number }[];
  };
}

export interface LatencyProfileOptions {
  threads?: number;
  /** Device and weight type the variant will be served with; default CPU float32. */
  target?: ExecutionTarget;
  /** Decode batch of the timed steps (default 1: the latency a single client sees). */
  batch?: number;
  /** Tokens cached before the timed steps (default 64). */
  contextTokens?: number;
  /** Timed steps per probe (default 40) after 4 warm-up steps; at most `maxMs` of timing. */
  steps?: number;
  maxMs?: number;
}

/** Step time the profile predicts for a model of this shape (µs). */
export function predictedStepUs(profile: LatencyProfile, spec: ModelSpec): number {
  const cost = latencyCost(profile.coefficients);
  let us = profile.baseUs;
  for (const l of spec.layers) {
    const c = cost.subBlocks(spec, l);
    us += c.attention + c.mlp;
  }
  return us;
}

/** The least share of a full sub-block's time a fit may put in its per-parameter cost. */
export const MIN_PER_PARAM_SHARE = 0.05;

/**
 * A line through two (params, µs) points of a sub-block (p1 the full one). Noise can bend it, so
 * the fixed cost and slope are clamped: the slope carries at least MIN_PER_PARAM_SHARE of the full
 * sub-block's time (a flat line would make width structures free to remove), the fixed cost is
 * never negative, and a full probe measured no slower than the empty one (no signal at all) costs
 * in proportion to parameters, at 1 ns per thousand.
 */
export function fitLine(p1: number, t1: number, p2: number, t2: number): { fixed: number; perParam: number } {
  const full = t1 > 0 ? t1 : 1e-6 * p1;
  let perParam = p1 === p2 ? full / p1 : (t1 - t2) / (p1 - p2);
  perParam = Math.min(Math.max(perParam, (MIN_PER_PARAM_SHARE * full) / p1), full / p1);
  return { fixed: Math.max(0, full - perParam * p1), perParam };
}

export async function measureLatencyProfile(spec: ModelSpec, o: LatencyProfileOptions = {}): Promise<LatencyProfile> {
  const widest = spec.layers.reduce((a, l) => (l.kvHeads > a.kvHeads ? l : a), spec.layers[0]!);
  const headDim = widest.headDim;
  const kv = Math.max(1, widest.kvHeads);
  const group = widest.kvHeads > 0 ? widest.heads / widest.kvHeads : 1;
  const ffn = Math.max(1, ...spec.layers.map((l) => l.ffn));
  const smallKv = Math.max(1, Math.round(kv / 4));
  const smallFfn = ffn >= 128 ? Math.max(32, Math.round(ffn / 4 / 32) * 32) : Math.max(1, Math.round(ffn / 4));
  const L = Math.min(8, Math.max(1, spec.layers.length));
  const layer = (kvHeads: number, f: number): LayerSpec => ({ heads: kvHeads * group, kvHeads, headDim, ffn: f });
  // The layer probes use a small vocabulary: a block's time does not depend on it, and a large LM
  // head's own step-to-step noise would swamp the differences the fit needs. The head probe keeps
  // the model's vocabulary: it is the step time pruning never removes.
  const probes: { name: string; layers: LayerSpec[]; vocab: number }[] = [
    { name: 'head', layers: [layer(0, 0)], vocab: spec.vocabSize },
    { name: 'small-head', layers: [layer(0, 0)], vocab: PROBE_VOCAB },
    { name: 'attention-full', layers: Array.from({ length: L }, () => layer(kv, 0)), vocab: PROBE_VOCAB },
    { name: 'attention-quarter', layers: Array.from({ length: L }, () => layer(smallKv, 0)), vocab: PROBE_VOCAB },
    { name: 'mlp-full', layers: Array.from({ length: L }, () => layer(0, ffn)), vocab: PROBE_VOCAB },
    { name: 'mlp-quarter', layers: Array.from({ length: L }, () => layer(0, smallFfn)), vocab: PROBE_VOCAB },
  ];
  const contextTokens = o.contextTokens ?? 64;
  const batch = o.batch ?? 1;
  const models = probes.map((p, k) => {
    const vocab = Math.min(p.vocab, spec.vocabSize);
    const s: ModelSpec = {
      ...spec,
      vocabSize: vocab,
      bosTokenId: Math.min(spec.bosTokenId, vocab - 1),
      eosTokenIds: spec.eosTokenIds.map((e) => Math.min(e, vocab - 1)),
      layers: p.layers,
      maxContext: Math.max(spec.maxContext, contextTokens + 64),
    };
    return { spec: s, weights: syntheticWeights(s, 11 + k) };
  });
  const timings = await timeDecodeInterleaved(models, {
    batch,
    promptTokens: contextTokens,
    steps: o.steps ?? 40,
    warmup: 4,
    threads: o.threads ?? os.availableParallelism(),
    maxMs: o.maxMs ?? 30_000,
    target: o.target ?? cpuTarget,
  });
  const us = timings.map((t) => t.medianMs * 1000);
  const [head, smallHead, attnFull, attnQuarter, mlpFull, mlpQuarter] = us as [number, number, number, number, number, number];
  const per = (t: number) => (t - smallHead) / L;
  const params = (l: LayerSpec) => layerParams(spec.hidden, l, spec.attentionBias);
  const attention = fitLine(params(layer(kv, 0)).attention, per(attnFull), params(layer(smallKv, 0)).attention, per(attnQuarter));
  const mlp = fitLine(params(layer(0, ffn)).mlp, per(mlpFull), params(layer(0, smallFfn)).mlp, per(mlpQuarter));
  return {
    coefficients: { attentionFixedUs: attention.fixed, attentionUsPerParam: attention.perParam, mlpFixedUs: mlp.fixed, mlpUsPerParam: mlp.perParam },
    baseUs: head,
    measured: {
      target: describeTarget(o.target ?? cpuTarget),
      threads: o.threads,
      batch,
      contextTokens,
      layersPerProbe: L,
      probes: probes.map((p, k) => ({ name: p.name, layers: p.layers, medianMs: timings[k]!.medianMs, steps: timings[k]!.steps })),
    },
  };
}
