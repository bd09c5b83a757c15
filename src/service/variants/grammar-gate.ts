/**
 * What every client grammar passes before a variant's engine worker compiles it, so that no
 * grammar can stall serving: a size limit (checked before anything compiles), a time limit (a new
 * grammar is first compiled in the variant's disposable compile thread, which is terminated when
 * it overruns), and a bound on compiles waiting (beyond it, 429 as when the request queue is full).
 * Only a grammar that compiled within the limit there reaches the engine, whose compile of it then
 * takes about as long: the engine's pause for a new grammar is bounded by about the same limit.
 */
import { admitOrThrow } from '../../runtime/engine/admission.ts';
import { QueueFullError } from '../../runtime/engine/scheduler-types.ts';
import { GrammarError, GrammarLimitError, type GrammarSpec, grammarKey, grammarSpecBytes } from '../../runtime/grammar/grammar-spec.ts';
import type { TimedGrammarCompiler } from './grammar-compile-thread.ts';

export interface GrammarLimits {
  /** Largest grammar accepted, in UTF-8 bytes of the schema, regex, EBNF or choices (--max-grammar-bytes). */
  maxBytes: number;
  /** Longest a new grammar may take to compile (--grammar-compile-timeout-ms). */
  compileTimeoutMs: number;
}

export const defaultGrammarLimits: Readonly<GrammarLimits> = { maxBytes: 64 * 1024, compileTimeoutMs: 2000 };

/**
 * Why a grammar was refused: `too_large` (--max-grammar-bytes), `timeout`
 * (--grammar-compile-timeout-ms), `invalid` (xgrammar refused it), `queue_full` (too many waiting),
 * `error` (the compile thread or the engine failed).
 */
export type GrammarFailureReason = 'too_large' | 'timeout' | 'invalid' | 'queue_full' | 'error';

export const GRAMMAR_FAILURE_REASONS: readonly GrammarFailureReason[] = ['too_large', 'timeout', 'invalid', 'queue_full', 'error'];

/** Grammars that wait for the compile thread at most (fewer when --max-queue is lower): each waits one limit per grammar ahead. */
const MAX_WAITING_COMPILES = 8;

/** The compile thread takes one grammar at a time. */
const COMPILE_SLOTS = 1;

/** Grammars remembered as compiled within the limit: they go straight to the engine (whose cache is smaller). */
const PROVEN_GRAMMARS = 256;

export interface GrammarGateOptions {
  /** The variant id, for log lines. */
  variant: string;
  limits: GrammarLimits;
  /** The variant's --max-queue: compiles waiting are bounded by it too. */
  maxQueue: number;
  compiler: TimedGrammarCompiler;
  /** The engine worker's check (compiles the grammar there and keeps it for the generations). */
  engineCheck: (spec: GrammarSpec) => Promise<void>;
  log: (line: string) => void;
}

export class GrammarGate {
  /** Keys of grammars that compiled within the limit, least recently used first. */
  private readonly proven = new Set<string>();
  /** Checks past the size limit and not yet answered: compiling, waiting to, or in the engine's check. */
  private pending = 0;
  private queue: Promise<unknown> = Promise.resolve();
  /** Refused grammars since start, by reason (mop_grammar_compile_failures_total). */
  private readonly failures = Object.fromEntries(GRAMMAR_FAILURE_REASONS.map((r) => [r, 0])) as Record<GrammarFailureReason, number>;

  constructor(private readonly options: GrammarGateOptions) {}

  /** Refused grammars since start, by reason. */
  failureCounts(): Readonly<Record<GrammarFailureReason, number>> {
    return { ...this.failures };
  }

  /**
   * Resolves when the engine has compiled the grammar; rejects with a GrammarLimitError (too large,
   * too slow to compile), a GrammarError (unusable), a QueueFullError, or the engine's refusal.
   */
  async check(spec: GrammarSpec): Promise<void> {
    try {
      await this.checkWithin(spec);
    } catch (e) {
      this.failures[reasonOf(e)]++;
      throw e;
    }
  }

  private async checkWithin(spec: GrammarSpec): Promise<void> {
    const { maxBytes, compileTimeoutMs } = this.options.limits;
    const bytes = grammarSpecBytes(spec);
    if (bytes > maxBytes) {
      throw new GrammarLimitError(`the grammar is ${bytes} bytes; this server accepts at most ${maxBytes} (--max-grammar-bytes / MOP_MAX_GRAMMAR_BYTES). Send a smaller schema, pattern or grammar.`, 'grammar_too_large');
    }
    const key = grammarKey(spec);
    if (this.proven.delete(key)) {
      this.proven.add(key);
      return this.options.engineCheck(spec);
    }
    // The one admission rule, with compiles as the requests held by a queue of one slot.
    admitOrThrow('generations', { generations: this.pending, scorings: 0 }, COMPILE_SLOTS, Math.min(this.options.maxQueue, MAX_WAITING_COMPILES));
    this.pending++;
    try {
      const outcome = await this.serialised(() => this.options.compiler.compile(spec, compileTimeoutMs));
      if (outcome === 'timed_out') {
        this.options.log(`model '${this.options.variant}': a ${spec.kind} grammar of ${bytes} bytes did not compile within ${compileTimeoutMs} ms (--grammar-compile-timeout-ms); its compile thread was stopped and the request refused`);
        throw new GrammarLimitError(
          `the grammar is too complex to compile within ${compileTimeoutMs} ms (--grammar-compile-timeout-ms / MOP_GRAMMAR_COMPILE_TIMEOUT_MS). Simplify it: fewer properties or alternatives, smaller repetition bounds.`,
          'grammar_too_complex',
        );
      }
      this.remember(key);
      await this.options.engineCheck(spec);
    } finally {
      this.pending--;
    }
  }

  /** Stop the compile thread (the variant is released). */
  close(): Promise<void> {
    return this.options.compiler.close();
  }

  private remember(key: string): void {
    this.proven.add(key);
    if (this.proven.size > PROVEN_GRAMMARS) this.proven.delete(this.proven.values().next().value!);
  }

  /** Runs `work` after every earlier compile: the thread takes one at a time, each under its own limit. */
  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function reasonOf(e: unknown): GrammarFailureReason {
  if (e instanceof GrammarLimitError) return e.code === 'grammar_too_large' ? 'too_large' : 'timeout';
  if (e instanceof GrammarError) return 'invalid';
  return e instanceof QueueFullError ? 'queue_full' : 'error';
}
