import * as ort from 'onnxruntime-node';
import { type DeviceName, ortDevice } from '../runtime/device/device.ts';
import { createOrtSession } from '../runtime/device/ort-session.ts';
import type { ModelSpec } from '../runtime/model/spec.ts';
import type { Weights } from '../runtime/model/tensor.ts';
import { buildCalibrationGraph, type CalibrationGraph, type CalibrationGraphOptions, calibrationGraphIo } from '../runtime/onnx/calibration-graph.ts';
import type { PruningPlan } from './pruning-plan.ts';

/**
 * One ONNX Runtime session over a model's calibration graph: forward passes over whole sequences
 * with any sub-network masked out (a PruningPlan of this model), returning logits, final hidden
 * states and the reduced taps. Scoring a candidate costs one pass and no rebuild.
 */
export interface ForwardTaps {
  /** Tokens the taps were summed over. */
  tokens: number;
  /** Per layer (of the session's model): Σ_tokens ‖group output‖₂ per KV group, or null. */
  kvNormSum: (Float64Array | null)[];
  /** Per layer: Σ_tokens |activation| per MLP neuron, or null. */
  ffnAbsSum: (Float64Array | null)[];
  /** Per layer: Σ_tokens cos(h_in, h_out). */
  layerCosSum: number[];
  attnCosSum: (number | null)[];
  mlpCosSum: (number | null)[];
}

export interface BatchOutput {
  /** [rows, seqLen, vocab] */
  logits?: Float32Array;
  /** [rows, seqLen, hidden] */
  hidden?: Float32Array;
}

export interface ForwardOptions {
  logits?: boolean;
  hidden?: boolean;
  taps?: boolean;
}

/** Equal-length token sequences, run together. */
export interface TokenBatch {
  rows: number;
  seqLen: number;
  /** rows × seqLen token ids. */
  ids: Int32Array;
}

export class MaskedForward {
  private constructor(
    readonly spec: ModelSpec,
    private readonly session: ort.InferenceSession,
    readonly graph: CalibrationGraph,
  ) {}

  /**
   * Calibration runs in float32 on any device: importance scores and the candidates' losses are
   * compared against each other, and float16 rounding would blur small differences. Off the CPU,
   * attention is the plain MatMul/Softmax form: WebGPU's GroupQueryAttention is wrong for runs of
   * 32 tokens or more (see WEBGPU_PREFILL_CHUNK), and calibration runs whole sequences.
   */
  static async create(
    spec: ModelSpec,
    weights: Weights,
    options: { maxSeqLen: number; threads?: number; attention?: CalibrationGraphOptions['attention']; device?: DeviceName },
  ): Promise<MaskedForward> {
    const device = ortDevice(options.device ?? 'cpu');
    const attention = options.attention ?? (device === 'cpu' ? 'gqa' : 'plain');
    const graph = buildCalibrationGraph(spec, weights, { maxSeqLen: options.maxSeqLen, attention });
    const session = await createOrtSession(graph.model, device, { ...(options.threads !== undefined && { threads: options.threads }) });
    return new MaskedForward(spec, session, graph);
  }

  /** Mask feeds for a plan of this session's model (all ones = the model itself). */
  maskFeeds(plan: PruningPlan): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const io of this.graph.layers) {
      const l = plan.layers[io.layer]!;
      if (io.kvMask) feeds[io.kvMask] = new ort.Tensor('float32', Float32Array.from(l.kvGroups), [io.kvHeads]);
      if (io.attnMask) feeds[io.attnMask] = new ort.Tensor('float32', Float32Array.of(l.attention ? 1 : 0), [1]);
      if (io.ffnMask) feeds[io.ffnMask] = new ort.Tensor('float32', Float32Array.from(l.neurons), [io.ffn]);
      if (io.mlpMask) feeds[io.mlpMask] = new ort.Tensor('float32', Float32Array.of(l.mlp ? 1 : 0), [1]);
    }
    return feeds;
  }

  /** One pass over `batch` under `plan`; adds the batch's taps into `taps` when given. */
  async run(batch: TokenBatch, plan: PruningPlan, want: ForwardOptions, taps?: ForwardTaps): Promise<BatchOutput> {
    if (batch.seqLen > this.graph.maxSeqLen) throw new RangeError(`sequence of ${batch.seqLen} tokens exceeds the graph's ${this.graph.maxSeqLen}`);
    const fetches: string[] = [];
    if (want.logits) fetches.push(calibrationGraphIo.logits);
    if (want.hidden) fetches.push(calibrationGraphIo.finalHidden);
    if (taps) {
      for (const io of this.graph.layers) {
        fetches.push(io.layerCosSum);
        for (const name of [io.kvNormSum, io.ffnAbsSum, io.attnCosSum, io.mlpCosSum]) if (name) fetches.push(name);
      }
    }
    if (fetches.length === 0) fetches.push(calibrationGraphIo.logits);
    const feeds = {
      ...this.maskFeeds(plan),
      [calibrationGraphIo.inputIds]: new ort.Tensor('int64', BigInt64Array.from(batch.ids, (t) => BigInt(t)), [batch.rows, batch.seqLen]),
    };
    const out = await this.session.run(feeds, fetches);
    if (taps) {
      taps.tokens += batch.rows * batch.seqLen;
      const data = (name: string) => out[name]!.data as Float32Array;
      this.graph.layers.forEach((io, k) => {
        taps.layerCosSum[k]! += data(io.layerCosSum)[0]!;
        if (io.attnCosSum) taps.attnCosSum[k]! += data(io.attnCosSum)[0]!;
        if (io.mlpCosSum) taps.mlpCosSum[k]! += data(io.mlpCosSum)[0]!;
        if (io.kvNormSum) addInto(taps.kvNormSum[k]!, data(io.kvNormSum));
        if (io.ffnAbsSum) addInto(taps.ffnAbsSum[k]!, data(io.ffnAbsSum));
      });
    }
    const result: BatchOutput = {};
    if (want.logits) result.logits = out[calibrationGraphIo.logits]!.data as Float32Array;
    if (want.hidden) result.hidden = out[calibrationGraphIo.finalHidden]!.data as Float32Array;
    return result;
  }

  /** Zeroed accumulators for this model's taps. */
  emptyTaps(): ForwardTaps {
    return {
      tokens: 0,
      kvNormSum: this.graph.layers.map((io) => (io.kvNormSum ? new Float64Array(io.kvHeads) : null)),
      ffnAbsSum: this.graph.layers.map((io) => (io.ffnAbsSum ? new Float64Array(io.ffn) : null)),
      layerCosSum: this.graph.layers.map(() => 0),
      attnCosSum: this.graph.layers.map((io) => (io.attnCosSum ? 0 : null)),
      mlpCosSum: this.graph.layers.map((io) => (io.mlpCosSum ? 0 : null)),
    };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function addInto(acc: Float64Array, x: Float32Array): void {
  for (let i = 0; i < acc.length; i++) acc[i]! += x[i]!;
}

/** Split equal-length sequences into batches of about `tokensPerRun` tokens (bounded memory per run). */
export function toBatches(sequences: readonly Int32Array[], tokensPerRun = 4096): TokenBatch[] {
  const byLen = new Map<number, Int32Array[]>();
  for (const s of sequences) {
    if (!byLen.has(s.length)) byLen.set(s.length, []);
    byLen.get(s.length)!.push(s);
  }
  const batches: TokenBatch[] = [];
  for (const [seqLen, seqs] of byLen) {
    const rowsPerRun = Math.max(1, Math.floor(tokensPerRun / seqLen));
    for (let off = 0; off < seqs.length; off += rowsPerRun) {
      const group = seqs.slice(off, off + rowsPerRun);
      const ids = new Int32Array(group.length * seqLen);
      group.forEach((s, r) => ids.set(s, r * seqLen));
      batches.push({ rows: group.length, seqLen, ids });
    }
  }
  return batches;
}
