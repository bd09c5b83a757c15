import type { DeviceName } from '../device/device.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { CalibrationGraphOptions } from '../onnx/calibration-graph.ts';
import type { TokenBatch } from './token-batch.ts';

/**
 * Forward passes over whole sequences of one model with any sub-network masked out, returning
 * logits, final hidden states and reduced per-structure statistics ("taps"). Pruning scores every
 * candidate with one pass and no rebuild. The ONNX Runtime implementation is ort-masked-forward.ts.
 */
export interface MaskedForward {
  readonly spec: ModelSpec;
  /** One pass over `batch` with `mask`; adds the batch's taps into `taps` when given. */
  run(batch: TokenBatch, mask: SubnetworkMask, want: ForwardOptions, taps?: ForwardTaps): Promise<BatchOutput>;
  /** Zeroed accumulators for this model's taps. */
  emptyTaps(): ForwardTaps;
  release(): Promise<void>;
}

/** What of one layer of the model takes part in a pass (1 = kept, 0 = masked out). */
export interface LayerMask {
  /** Per KV group (its key/value head and its query heads). */
  kvGroups: ArrayLike<number>;
  /** Per MLP neuron. */
  neurons: ArrayLike<number>;
  /** The attention sub-block as a whole. */
  attention: boolean;
  /** The MLP sub-block as a whole. */
  mlp: boolean;
}

/** A mask for every layer of the model (a pruning plan is one). */
export interface SubnetworkMask {
  layers: readonly LayerMask[];
}

export interface MaskedForwardOptions {
  /** Longest sequence a pass may run. */
  maxSeqLen: number;
  threads?: number;
  attention?: CalibrationGraphOptions['attention'];
  /** Default cpu; the passes always run in float32. */
  device?: DeviceName;
}

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
