import type { FileBlocks } from '../model/block-quantization.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import type { ExecutionTarget } from '../device/device.ts';
import { ContextLengthError, InvalidRequestError } from './errors.ts';
import { ModelSession } from './ort-decoder-session.ts';

/**
 * Prompt log-probabilities: log p(token t | tokens before t) for every prompt token after the
 * first (which has no context: null), with the top-N alternatives at each position. This is what
 * `echo` + `logprobs` on /v1/completions return, and what evaluation harnesses score
 * log-likelihoods with.
 */
export interface PromptScores {
  /** One per prompt token; null for the first. */
  logprobs: (number | null)[];
  /** One per prompt token: the N most likely tokens at that position, most likely first; null for the first. */
  top: ({ token: number; logprob: number }[] | null)[];
}

export interface PromptScorer {
  /** Throws ContextLengthError when the prompt exceeds the context, RangeError for an empty one. */
  scorePrompt(tokens: readonly number[], topN: number): Promise<PromptScores>;
}

/** Scores from full-sequence logits ([tokens.length × vocab], row t predicting token t + 1). */
export function promptScoresFromLogits(tokens: readonly number[], logits: Float32Array, vocab: number, topN: number): PromptScores {
  const scores: PromptScores = { logprobs: [null], top: [null] };
  appendScores(scores, tokens, 0, logits, vocab, topN);
  return scores;
}

/** Add the scores that the logits of positions from, from + 1, … (one row each) give: row r scores token from + r + 1. */
function appendScores(scores: PromptScores, tokens: readonly number[], from: number, logits: Float32Array, vocab: number, topN: number): void {
  const rows = logits.length / vocab;
  for (let r = 0; r < rows && from + r + 1 < tokens.length; r++) {
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    let max = -Infinity;
    for (const x of row) if (x > max) max = x;
    let sum = 0;
    for (const x of row) sum += Math.exp(x - max);
    const logZ = max + Math.log(sum);
    scores.logprobs.push(row[tokens[from + r + 1]!]! - logZ);
    scores.top.push(topK(row, topN).map((token) => ({ token, logprob: row[token]! - logZ })));
  }
}

/** Indices of the k largest entries, largest first (ties: lower index first). */
function topK(row: Float32Array, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < row.length && k > 0; i++) {
    if (best.length === k && row[i]! <= row[best[k - 1]!]!) continue;
    let at = best.length === k ? k - 1 : best.length;
    if (best.length < k) best.push(i);
    while (at > 0 && row[best[at - 1]!]! < row[i]!) {
      best[at] = best[at - 1]!;
      at--;
    }
    best[at] = i;
  }
  return best;
}

/** Prompt tokens per scoring run unless told otherwise: the server's default prefill chunk. */
export const DEFAULT_SCORING_CHUNK = 256;

export interface ScoringSessionOptions {
  maxContext: number;
  target?: ExecutionTarget;
  threads?: number;
  fileBlocks?: FileBlocks;
  /**
   * Prompt tokens per run (default 256). Each run's logits are scored before the next runs, and
   * the thread is yielded in between, so decode steps of the serving session beside it wait for
   * one piece, not for the whole prompt (the engine worker passes the scheduler's prefill chunk).
   */
  chunk?: number;
}

/** One prompt being scored piece by piece: the scheduler runs one piece per scheduling step. */
export interface ScoreRun {
  /** Score the next piece; the whole prompt's scores once the last piece is done, else undefined. */
  step(): Promise<PromptScores | undefined>;
  /** Free the session's slot (after the last piece, or when the request is abandoned). */
  close(): void;
}

/** What the scheduler needs of a scorer: one run at a time, in pieces. */
export interface PieceScorer {
  /** Throws ContextLengthError / RangeError for prompts it cannot score. */
  check(tokens: readonly number[]): void;
  begin(tokens: readonly number[], topN: number): Promise<ScoreRun>;
  release(): Promise<void>;
}

/**
 * A scoring session beside the serving one: the same model with a graph that returns logits for
 * every position (the serving graph returns the last position's only), one sequence at a time,
 * built on first use so a server that never scores never pays for it.
 */
export class ScoringSession implements PromptScorer, PieceScorer {
  private session: Promise<ModelSession> | undefined;
  /** One prompt at a time: its pieces share the session's one cache slot. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly spec: ModelSpec,
    private readonly weights: Weights,
    private readonly options: ScoringSessionOptions,
  ) {}

  check(tokens: readonly number[]): void {
    if (tokens.length === 0) throw new InvalidRequestError('the prompt has no tokens');
    if (tokens.length > this.options.maxContext) throw new ContextLengthError(`the prompt has ${tokens.length} tokens; the context holds ${this.options.maxContext}`);
  }

  /** Start scoring `tokens`; the caller runs its pieces and closes it. One run at a time. */
  async begin(tokens: readonly number[], topN: number): Promise<ScoreRun> {
    this.check(tokens);
    const chunk = Math.max(1, this.options.chunk ?? DEFAULT_SCORING_CHUNK);
    const session = await this.open(chunk);
    session.reset(0);
    const scores: PromptScores = { logprobs: [null], top: [null] };
    let from = 0;
    return {
      step: async () => {
        const logits = await session.prefill(0, tokens.slice(from, from + chunk));
        appendScores(scores, tokens, from, logits, this.spec.vocabSize, topN);
        from += chunk;
        return from >= tokens.length ? scores : undefined;
      },
      close: () => session.reset(0),
    };
  }

  /** A whole prompt at once (pieces yield the thread in between); concurrent calls queue. */
  async scorePrompt(tokens: readonly number[], topN: number): Promise<PromptScores> {
    this.check(tokens);
    const run = this.queue.then(async () => {
      const piece = await this.begin(tokens, topN);
      try {
        for (;;) {
          const done = await piece.step();
          if (done) return done;
          await new Promise((resolve) => setImmediate(resolve));
        }
      } finally {
        piece.close();
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The session, built on first use; a build that failed is retried by the next call, not cached. */
  private open(chunk: number): Promise<ModelSession> {
    this.session ??= ModelSession.create(this.spec, this.weights, {
      maxBatch: 1,
      maxContext: this.options.maxContext,
      logits: 'all',
      prefillChunk: chunk,
      ...(this.options.target && { target: this.options.target }),
      ...(this.options.threads !== undefined && { threads: this.options.threads }),
      ...(this.options.fileBlocks && { fileBlocks: this.options.fileBlocks }),
    });
    const pending = this.session;
    pending.catch(() => {
      if (this.session === pending) this.session = undefined;
    });
    return pending;
  }

  async release(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (session) await (await session.catch(() => undefined))?.release();
  }
}
