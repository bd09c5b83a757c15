/**
 * Messages between a variant's grammar compile thread (compile-worker.ts) and its client on the
 * main thread. The thread compiles client grammars before the engine worker does, under a time
 * limit, and is terminated when one takes too long; everything here is structured-cloneable.
 */
import type { TokenizerSource } from '../tokenizer/types.ts';
import type { GrammarSpec } from './grammar-spec.ts';

/** The thread's `workerData`: the same tokenizer and vocabulary size the engine worker builds its compiler from. */
export interface CompileWorkerInit {
  tokenizer: TokenizerSource;
  /** The model's vocabulary size (logit count), which may exceed the tokenizer's. */
  vocabSize: number;
}

/** Compile `spec` and check that the model can start it (what the engine's check does). */
export interface ToCompileWorker {
  id: number;
  spec: GrammarSpec;
}

export type FromCompileWorker =
  /** The compiler is built (vocabulary, xgrammar instance): compile times from here on are the grammar's own. */
  | { type: 'ready' }
  | { type: 'checked'; id: number }
  /** `grammar`: the grammar is unusable (GrammarError, a 400); otherwise the thread failed. */
  | { type: 'failed'; id: number; grammar: boolean; message: string };
