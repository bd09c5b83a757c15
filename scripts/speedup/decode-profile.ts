/**
 * Where a decode step's time goes, measured with ModelSession (no server, no HTTP): the dense model
 * against two stripped copies of it that keep what pruning never touches.
 *
 * - `dense`: the model as served.
 * - `head`: the same embedding, final norm and LM head (same vocabulary and hidden size), but one
 *   empty layer (no attention, no MLP): embedding gather + the [hidden × vocab] LM-head GEMV + the
 *   per-run overhead of ONNX Runtime. This is the floor a pruned model can never go below.
 * - `overhead`: the same with a 256-token vocabulary: what is left of `head` without the LM head.
 *
 * So per step: blocks = dense − head, LM head ≈ head − overhead, fixed overhead = overhead. If block
 * time scales with block parameters, a variant with a fraction r of block parameters removed takes
 * about head + (1 − r) · blocks, and its latency ratio to dense is bounded below by head / dense.
 */
import { type StepTiming, type TimeDecodeOptions, timeDecodeInterleaved } from '../../src/runtime/engine/decode-timing.ts';
import { type ModelSpec, parameterCounts, weightName } from '../../src/runtime/model/spec.ts';
import { syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';

export { argmax, type StepTiming, type TimeDecodeOptions, timeDecode, timeDecodeInterleaved } from '../../src/runtime/engine/decode-timing.ts';

export interface DecodeProfile {
  batch: number;
  promptTokens: number;
  dense: StepTiming;
  head: StepTiming;
  overhead: StepTiming;
  /** Derived (ms per step). */
  blocksMs: number;
  lmHeadMs: number;
  overheadMs: number;
  /** head / dense: the latency ratio of a model with every block removed. */
  floorRatio: number;
}

export interface ParamShares {
  blocks: number;
  /** Embedding + final norm + LM head (tied: one matrix counted once). */
  embeddings: number;
  /** Parameters a decode step multiplies by (the LM head matrix; the embedding is only gathered). */
  lmHead: number;
  /** lmHead / (blocks + lmHead): the share of a decode step's weight reads that pruning cannot shrink. */
  lmHeadShareOfStepWeights: number;
  /** Latency ratio at block-compression r if step time ∝ weights read: (lmHead + (1 − r)·blocks) / (lmHead + blocks). */
  predictedRatio(r: number): number;
}

/** Parameter arithmetic of the bound (pure). */
export function paramShares(spec: ModelSpec): ParamShares {
  const p = parameterCounts(spec);
  const lmHead = spec.vocabSize * spec.hidden;
  const step = p.blocks + lmHead;
  return {
    blocks: p.blocks,
    embeddings: p.embeddings,
    lmHead,
    lmHeadShareOfStepWeights: lmHead / step,
    predictedRatio: (r: number) => (lmHead + (1 - r) * p.blocks) / step,
  };
}

/** The latency ratio the measured step profile predicts for block-compression r (pure). */
export function profileRatio(profile: Pick<DecodeProfile, 'blocksMs' | 'lmHeadMs' | 'overheadMs'>, r: number): number {
  const dense = profile.blocksMs + profile.lmHeadMs + profile.overheadMs;
  return (profile.overheadMs + profile.lmHeadMs + (1 - r) * profile.blocksMs) / dense;
}

/** The model with one empty layer and the same embedding/norm/head (optionally a smaller vocabulary). */
export function headOnlyModel(spec: ModelSpec, weights: Weights, vocabSize?: number): { spec: ModelSpec; weights: Weights } {
  const l0 = spec.layers[0]!;
  const s: ModelSpec = { ...spec, layers: [{ heads: 0, kvHeads: 0, headDim: l0.headDim, ffn: 0 }] };
  if (vocabSize === undefined || vocabSize === spec.vocabSize) {
    const w: Weights = new Map();
    for (const name of [weightName.embed, weightName.finalNorm, weightName.lmHead]) {
      const t = weights.get(name);
      if (t) w.set(name, t);
    }
    return { spec: s, weights: w };
  }
  const small: ModelSpec = { ...s, vocabSize, bosTokenId: Math.min(s.bosTokenId, vocabSize - 1), eosTokenIds: s.eosTokenIds.map((e) => Math.min(e, vocabSize - 1)) };
  return { spec: small, weights: syntheticWeights(small, 7) };
}

/** Dense vs head-only vs overhead-only decode steps at one batch size, interleaved step by step. */
export async function profileDecode(model: { spec: ModelSpec; weights: Weights }, o: TimeDecodeOptions): Promise<DecodeProfile> {
  const [dense, head, overhead] = (await timeDecodeInterleaved([model, headOnlyModel(model.spec, model.weights), headOnlyModel(model.spec, model.weights, 256)], o)) as [StepTiming, StepTiming, StepTiming];
  const blocksMs = Math.max(0, dense.medianMs - head.medianMs);
  const lmHeadMs = Math.max(0, head.medianMs - overhead.medianMs);
  return {
    batch: o.batch,
    promptTokens: o.promptTokens,
    dense,
    head,
    overhead,
    blocksMs,
    lmHeadMs,
    overheadMs: overhead.medianMs,
    floorRatio: head.medianMs / dense.medianMs,
  };
}
