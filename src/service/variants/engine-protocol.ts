/**
 * Messages between the main thread and an engine worker (one per served variant). The main
 * thread keeps HTTP, metrics and this protocol's client; the worker owns the session, the KV cache
 * and the continuous-batching scheduler. Everything here is structured-cloneable; weights travel
 * in SharedArrayBuffers, so starting a worker copies no tensor.
 */
import type { ExecutionTarget } from '../../runtime/device/device.ts';
import type { PromptScores } from '../../runtime/engine/prompt-scores.ts';
import type { GrammarSpec } from '../../runtime/grammar/grammar-spec.ts';
import type { SchedulerOptions, SchedulerStats } from '../../runtime/engine/scheduler-types.ts';
import type { GenerationEvent, GenerationRequest } from '../../runtime/engine/sequence.ts';
import type { FileBlocks } from '../../runtime/model/block-quantization.ts';
import type { ModelSpec } from '../../runtime/model/spec.ts';
import type { Weights } from '../../runtime/model/tensor.ts';
import type { TokenizerSource } from '../../runtime/tokenizer/types.ts';

/** How a variant's session is built: the same for the start-up model and every pruned one. */
export interface EngineSessionOptions {
  maxBatch: number;
  maxContext: number;
  prefillChunk?: number;
  target: ExecutionTarget;
  /** ONNX Runtime intra-op threads of this variant's session. */
  threads?: number;
  /** Prefill fresh prompts that arrive together in one run (CPU sessions; default on). */
  batchPrefill?: boolean;
  /** Idle ONNX Runtime pool threads spin instead of sleeping (default off). */
  spin?: boolean;
  /** The native CUDA addon file for `cuda-native` variants (`--cuda-addon`); default: the built one. */
  cudaAddon?: string;
}

/** The worker's `workerData`. */
export interface EngineInit {
  /** Variant id, for log lines. */
  variant: string;
  spec: ModelSpec;
  weights: Weights;
  /** The checkpoint's own quantized matrices (in SharedArrayBuffers too). */
  fileBlocks?: FileBlocks;
  tokenizer: TokenizerSource;
  session: EngineSessionOptions;
  scheduling: SchedulerOptions;
  /** How often the worker sends a heartbeat (the main thread's stall watchdog listens for it); default 1000. */
  heartbeatMs?: number;
}

export interface WeightBlockCounts {
  fromFile: number;
  quantized: number;
}

/**
 * A generation request without its AbortSignal (aborts are messages) and without a live
 * constraint: a structured output crosses as its plain `grammar` spec, and the worker compiles it.
 */
export type WireRequest = Omit<GenerationRequest, 'signal' | 'constraint'>;

/** An error as it crosses threads: its class name picks the typed error rebuilt on the other side. */
export interface WireError {
  name: string;
  message: string;
}

export type ToEngine =
  | { type: 'submit'; id: number; request: WireRequest }
  | { type: 'abort'; id: number }
  /** Prompt log-probabilities (echo + logprobs), admitted like a generation; answered by 'scored' or 'rejected'; 'abort' cancels it. */
  | { type: 'score'; id: number; tokens: number[]; topN: number }
  /** Compile a structured-output grammar (cached for the generations that follow); answered by 'grammar-checked' or 'rejected' (a GrammarError). */
  | { type: 'check-grammar'; id: number; spec: GrammarSpec }
  | { type: 'drain'; graceMs: number }
  | { type: 'release' }
  /** End the thread at once, as a crash would: the requests it holds are not finished. */
  | { type: 'exit' };

export type FromEngine =
  /** `weightBlocks`: with int8 / int4 weights, matrices run from the checkpoint's own blocks and matrices quantized at load. */
  | { type: 'ready'; maxContext: number; prefillChunk: number; target: ExecutionTarget; loadMs: number; weightBlocks?: WeightBlockCounts }
  | { type: 'init-failed'; error: WireError }
  /** The scheduler refused a submission the main thread's checks let through. */
  | { type: 'rejected'; id: number; error: WireError }
  /** `admittedAt` (epoch ms) comes with a request's first event. */
  | { type: 'event'; id: number; event: GenerationEvent; admittedAt?: number }
  | { type: 'scored'; id: number; scores: PromptScores }
  | { type: 'grammar-checked'; id: number }
  | { type: 'stats'; stats: SchedulerStats }
  /** Proof of life; `busyMs`: how long the session call in progress has run (0 between calls). */
  | { type: 'heartbeat'; busyMs: number }
  /** A model step failed; the requests it carried were rejected with this error. */
  | { type: 'step-failed'; error: WireError }
  | { type: 'drained' }
  | { type: 'released' };

export function toWireError(e: unknown): WireError {
  return e instanceof Error ? { name: e.name, message: e.message } : { name: 'Error', message: String(e) };
}
