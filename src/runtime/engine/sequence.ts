import type { StreamDecoder, Tokenizer } from '../tokenizer/types.ts';
import type { GrammarSpec } from '../grammar/grammar-spec.ts';
import type { TokenConstraint } from '../grammar/token-constraint.ts';
import { Sampler, TokenHistory, type TopLogprob } from './sampler.ts';
import type { SamplingParams } from './sampling-params.ts';
import { StopMatcher } from './stop-matcher.ts';

/** What a caller asks of one generation. */
export interface GenerationRequest {
  /** Prompt token ids, BOS included when the model wants one. */
  promptTokens: readonly number[];
  /** Most tokens to generate. */
  maxTokens: number;
  sampling: SamplingParams;
  /** Stop strings; generation ends before the first occurrence, which is not emitted. */
  stop?: readonly string[];
  /** Generate past EOS (benchmarks). */
  ignoreEos?: boolean;
  /** Aborting ends generation with finish reason 'abort' at the next step. */
  signal?: AbortSignal;
  /** Structured output, as plain data (what crosses to an engine worker, which makes `constraint` of it). */
  grammar?: GrammarSpec;
  /**
   * The live constraint (one per sequence, never shared): only allowed tokens are sampled, and the
   * sequence ends when it is complete. The sequence releases it when it finishes.
   */
  constraint?: TokenConstraint;
}

export type FinishReason = 'stop' | 'length' | 'abort' | 'timeout';

/** One generated token and the text it completes (text may be '' while a character is split). */
export interface TokenEvent {
  type: 'token';
  token: number;
  text: string;
  /** The token's log-probability and the top alternatives: present when the request asked for logprobs. */
  logprob?: number;
  top?: TopLogprob[];
}

/** A token event's log-probability, where the request asked for logprobs (a bug otherwise). */
export function eventLogprob(e: TokenEvent): number {
  if (e.logprob === undefined) throw new Error(`token ${e.token} carries no log-probability: its request did not ask for logprobs`);
  return e.logprob;
}

export interface FinishEvent {
  type: 'finish';
  reason: FinishReason;
  /** Text released at the end (held back for a possible stop string or a split character). */
  text: string;
  promptTokens: number;
  completionTokens: number;
}

export type GenerationEvent = TokenEvent | FinishEvent;

/**
 * The per-request side of generation: sampling, detokenising, stop detection and finish rules.
 * It sees logits and returns events; which batch slot or session produced the logits is the
 * driver's business (a single-request loop or a batching scheduler). Built at submission, so bad
 * sampling parameters fail the submission; the sampler's vocabulary-sized buffers come at the
 * first step and go at the finish, so a request waiting in the queue holds none.
 */
export class Sequence {
  private readonly sampler: Sampler;
  private readonly history: TokenHistory;
  private readonly decoder: StreamDecoder;
  private readonly stops: StopMatcher;
  private readonly eos: ReadonlySet<number>;
  finished: FinishEvent | undefined;

  constructor(
    readonly request: GenerationRequest,
    tokenizer: Tokenizer,
    vocabSize: number,
  ) {
    this.sampler = new Sampler(request.sampling, vocabSize);
    this.history = new TokenHistory(request.promptTokens);
    this.decoder = tokenizer.createDecoder(request.promptTokens[request.promptTokens.length - 1]);
    this.stops = new StopMatcher([...(request.stop ?? [])]);
    this.eos = new Set(request.ignoreEos ? [] : tokenizer.eosTokenIds);
  }

  /** Bytes of sampler scratch buffers held now: none until the first step, none once finished. */
  get bufferBytes(): number {
    return this.sampler.bufferBytes;
  }

  get generatedTokens(): readonly number[] {
    return this.history.generated;
  }

  /**
   * Sample from this step's logits; returns the token event and, if it ended the sequence, the
   * finish event. Throws the constraint's error when it allows no token (the driver fails this
   * request alone).
   */
  step(logits: Float32Array): GenerationEvent[] {
    if (this.finished) throw new Error('step() on a finished sequence');
    const constraint = this.request.constraint;
    const s = this.sampler.sample(logits, this.history, constraint?.mask());
    this.history.push(s.token);
    constraint?.accept(s.token);
    const events: GenerationEvent[] = [];
    if (this.eos.has(s.token)) {
      events.push({ type: 'token', token: s.token, text: '', ...(s.logprob !== undefined && { logprob: s.logprob }), ...(s.top && { top: s.top }) });
      events.push(this.finish('stop'));
      return events;
    }
    const pushed = this.stops.push(this.decoder.push(s.token));
    events.push({ type: 'token', token: s.token, text: pushed.emit, ...(s.logprob !== undefined && { logprob: s.logprob }), ...(s.top && { top: s.top }) });
    if (pushed.stopped) events.push(this.finish('stop', false));
    else if (constraint?.terminated) events.push(this.finish('stop'));
    else if (this.history.generated.length >= this.request.maxTokens) events.push(this.finish('length'));
    return events;
  }

  /** End early (abort, timeout, context full); releases held text unless a stop string matched. */
  finish(reason: FinishReason, release = true): FinishEvent {
    // The sequence may stay referenced (an event consumer, the scheduler's bookkeeping) after it ends.
    this.sampler.release();
    this.request.constraint?.release();
    let text = '';
    if (release) text = this.stops.push(this.decoder.flush()).emit + this.stops.flush();
    this.finished = {
      type: 'finish',
      reason,
      text,
      promptTokens: this.request.promptTokens.length,
      completionTokens: this.history.generated.length,
    };
    return this.finished;
  }
}
