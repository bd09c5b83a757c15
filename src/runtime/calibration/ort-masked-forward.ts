import * as ort from 'onnxruntime-node';
import { ortDevice } from '../device/device.ts';
import { createOrtSession } from '../device/ort-session.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import { buildCalibrationGraph, type CalibrationGraph, calibrationGraphIo } from '../onnx/calibration-graph.ts';
import type { BatchOutput, ForwardOptions, ForwardTaps, MaskedForward, MaskedForwardOptions, SubnetworkMask } from './masked-forward.ts';
import type { TokenBatch } from './token-batch.ts';

/**
 * A MaskedForward on ONNX Runtime: one session over the model's calibration graph, whose masks are
 * graph inputs.
 *
 * Calibration runs in float32 on any device: importance scores and the candidates' losses are
 * compared against each other, and float16 rounding would blur small differences. Off the CPU,
 * attention is the plain MatMul/Softmax form: WebGPU's GroupQueryAttention is wrong for runs of
 * 32 tokens or more (see WEBGPU_PREFILL_CHUNK), and calibration runs whole sequences.
 */
export async function openMaskedForward(spec: ModelSpec, weights: Weights, options: MaskedForwardOptions): Promise<MaskedForward> {
  const device = ortDevice(options.device ?? 'cpu');
  const attention = options.attention ?? (device === 'cpu' ? 'gqa' : 'plain');
  const graph = buildCalibrationGraph(spec, weights, { maxSeqLen: options.maxSeqLen, attention });
  const session = await createOrtSession(graph.model, device, { ...(options.threads !== undefined && { threads: options.threads }) });
  return new OrtMaskedForward(spec, session, graph);
}

class OrtMaskedForward implements MaskedForward {
  constructor(
    readonly spec: ModelSpec,
    private readonly session: ort.InferenceSession,
    private readonly graph: CalibrationGraph,
  ) {}

  /** Mask feeds for a mask of this session's model (all ones = the model itself). */
  private maskFeeds(mask: SubnetworkMask): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const io of this.graph.layers) {
      const l = mask.layers[io.layer]!;
      if (io.kvMask) feeds[io.kvMask] = new ort.Tensor('float32', Float32Array.from(l.kvGroups), [io.kvHeads]);
      if (io.attnMask) feeds[io.attnMask] = new ort.Tensor('float32', Float32Array.of(l.attention ? 1 : 0), [1]);
      if (io.ffnMask) feeds[io.ffnMask] = new ort.Tensor('float32', Float32Array.from(l.neurons), [io.ffn]);
      if (io.mlpMask) feeds[io.mlpMask] = new ort.Tensor('float32', Float32Array.of(l.mlp ? 1 : 0), [1]);
    }
    return feeds;
  }

  async run(batch: TokenBatch, mask: SubnetworkMask, want: ForwardOptions, taps?: ForwardTaps): Promise<BatchOutput> {
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
      ...this.maskFeeds(mask),
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
