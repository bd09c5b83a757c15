/**
 * What the HTTP layer sees of a served model: its id, a scheduler to submit generations to, prompt
 * scoring (log-probabilities of a prompt's tokens, as plain numbers), the tokenizer that turns
 * prompts into ids, and a plain description. Never a session or weights:
 * those live in the variant's engine worker.
 */
import type { ExecutionTarget } from '../../runtime/device/device.ts';
import type { PromptScores } from '../../runtime/engine/prompt-scores.ts';
import type { Scheduler } from '../../runtime/engine/scheduler-types.ts';
import type { GrammarSpec } from '../../runtime/grammar/grammar-spec.ts';
import type { LayerSpec } from '../../runtime/model/spec.ts';
import type { Tokenizer } from '../../runtime/tokenizer/types.ts';
import type { GrammarFailureReason } from './grammar-gate.ts';

/**
 * serving: takes requests; restarting: its engine died (or an operator asked) and a new one is
 * starting; stalled: its engine has not finished a step within --engine-stall-ms (503 until it
 * answers again or is restarted); unavailable: given up on.
 */
export type VariantStatus = 'serving' | 'restarting' | 'stalled' | 'unavailable';

export interface ServedVariant {
  /** The `model` id clients send, and the `model` label of every metric series. */
  readonly id: string;
  readonly scheduler: Scheduler;
  /** Log-probabilities of a prompt's tokens (echo + logprobs), admitted like a generation; `signal` aborts it. */
  scorePrompt(tokens: readonly number[], topN: number, signal?: AbortSignal): Promise<PromptScores>;
  /**
   * Compile a structured-output grammar in the variant's engine, within the server's grammar
   * limits; rejects with a GrammarError saying what is wrong (a GrammarLimitError past a limit) or
   * a QueueFullError when too many grammars wait to compile.
   */
  checkGrammar(spec: GrammarSpec): Promise<void>;
  /** Grammars checkGrammar refused since the variant started, by reason. */
  grammarFailures(): Readonly<Record<GrammarFailureReason, number>>;
  readonly tokenizer: Tokenizer;
  /** Total parameters (embeddings included). */
  readonly parameters: number;
  /** Fraction of the dense model's block parameters removed by pruning: 0 for the dense model. */
  readonly compressionRatio: number;
  /** Per-layer shapes (heads, KV heads, head size, ffn). */
  readonly layers: readonly LayerSpec[];
  /** Context per sequence (prompt + output). */
  readonly maxContext: number;
  readonly target: ExecutionTarget;
  /** With int8 / int4 weights: matrices run from the checkpoint's own blocks (GGUF Q8_0 / Q4_0), and quantized at load. */
  readonly weightBlocks?: { fromFile: number; quantized: number } | undefined;
  /** Where the weights came from (a checkpoint path, or the source and the prune that made it). */
  readonly path: string;
  /** Unix seconds when it started serving (/v1/models `created`). */
  readonly created: number;
  readonly status: VariantStatus;
  /** Milliseconds the engine has been stalled (0 unless status is 'stalled'). */
  stalledMs(): number;
  /** Why it is not serving, when it is not. */
  readonly statusReason: string | undefined;
}
