/**
 * POST /v1/completions: prompts (string, strings, token ids, token-id arrays) × n choices, each a
 * scheduler generation; choice index = prompt index × n + j, as OpenAI numbers them. Answers with
 * one JSON object or, with `stream: true`, SSE chunks of the same shape. With `echo` and
 * `logprobs`, the prompt tokens' log-probabilities come from the variant's prompt scoring (plain
 * numbers from its engine worker); `max_tokens: 0` with `echo` generates nothing. A structured
 * output (response_format, structured_outputs, guided_*) constrains every choice.
 */
import type { PromptScores } from '../runtime/engine/prompt-scores.ts';
import { eventLogprob, type GenerationEvent, type GenerationRequest, type TokenEvent } from '../runtime/engine/sequence.ts';
import type { ServedVariant } from '../service/variants/served-variant.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import type { EndpointContext } from './endpoint.ts';
import { parseBody, resolveVariant, streamErrorBody, streamStall } from './endpoint.ts';
import { invalidRequest } from './errors.ts';
import { toApiError } from './service-errors.ts';
import { type ChoiceEvent, Fanout } from './fanout.ts';
import { answerGenerations, ChunkFraming, generationChunks, includeUsage, ResponseEnvelope } from './generation-response.ts';
import { type PreparedPrompt, preparePrompts, promptCount, resolveMaxTokens } from './prompt.ts';
import { requestEncoding } from './prompt-encoding.ts';
import {
  type CompletionChoice,
  type CompletionLogprobs,
  type CompletionRequest,
  type CompletionResponse,
  completionRequestSchema,
  type FinishReasonWire,
  usage,
} from './protocol.ts';
import { samplingParams, stopList } from './sampling.ts';
import { sseResponse } from './sse.ts';
import { checkRequestedGrammar, requestedGrammar } from './structured-output.ts';

export async function handleCompletion(json: unknown, ctx: EndpointContext): Promise<Response> {
  const body: CompletionRequest = parseBody(completionRequestSchema(ctx.limits), json);
  const variant = resolveVariant(ctx, body.model);
  rejectUnsupported(body);

  const { tokenizer } = variant;
  const context = variant.maxContext;
  const echo = body.echo ?? false;
  const n = body.n ?? 1;
  // Checked before any prompt is encoded or decoded: a request over the limit costs nothing more.
  const count = promptCount(body.prompt);
  if (count * n > ctx.limits.maxChoices) {
    throw invalidRequest(`${count} prompts × n=${n} is more generations than this server can hold at once (${ctx.limits.maxChoices}).`, count > 1 ? 'prompt' : 'n');
  }
  const prompts = await preparePrompts(body.prompt, requestEncoding(ctx, tokenizer), { context, echo });
  const logprobs = body.logprobs ?? undefined;
  if (body.max_tokens === 0 && !echo) throw invalidRequest('max_tokens 0 generates nothing; it is accepted only with echo: true (to return the prompt and its log-probabilities).', 'max_tokens');
  const grammar = requestedGrammar(body);
  if (grammar && body.max_tokens !== 0) await checkRequestedGrammar(variant, grammar, ctx.log);
  // Once per prompt, however many choices share it.
  const promptScores = echo && logprobs !== undefined ? await scorePrompts(variant, prompts, logprobs, ctx) : undefined;
  const shape = new CompletionShape(new ResponseEnvelope('cmpl', variant.id), tokenizer, prompts, n, echo, logprobs !== undefined, promptScores);
  if (body.max_tokens === 0) {
    // Scored (or echoed) without generating: answered here, so counted here.
    ctx.metrics.countRequest(variant.id, 'success');
    ctx.counted = true;
    if (body.stream) return sseResponse(shape.promptOnlyChunks(includeUsage(body)), streamErrorBody(ctx), streamStall(ctx));
    return Response.json(shape.response(Array.from({ length: prompts.length * n }, () => [])));
  }
  const stop = stopList(body.stop);
  const requests: GenerationRequest[] = [];
  prompts.forEach((p, i) => {
    const maxTokens = resolveMaxTokens(p.tokens.length, body.max_tokens, ctx.limits.maxTokensDefault, context, prompts.length > 1 ? `prompt[${i}]` : 'prompt', 'max_tokens');
    for (let j = 0; j < n; j++) {
      requests.push({ promptTokens: p.tokens, maxTokens, sampling: samplingParams(body, logprobs, j), stop, ignoreEos: body.ignore_eos ?? false, ...(grammar && { grammar: grammar.spec }) });
    }
  });

  return answerGenerations(ctx, new Fanout(variant, ctx.metrics, requests, ctx.signal), body, shape);
}

/**
 * Each prompt's log-probabilities, admitted like generations (queue limit, deadline, drain) and
 * abandoned when the client goes away; the engine's refusals as HTTP errors.
 */
async function scorePrompts(variant: ServedVariant, prompts: readonly PreparedPrompt[], topN: number, ctx: EndpointContext): Promise<PromptScores[]> {
  const out: PromptScores[] = [];
  for (const [i, p] of prompts.entries()) {
    const param = prompts.length > 1 ? `prompt[${i}]` : 'prompt';
    try {
      out.push(await variant.scorePrompt(p.tokens, topN, ctx.signal));
    } catch (e) {
      throw toApiError(e, ctx.log, param);
    }
  }
  return out;
}

/** Fields OpenAI defines that this server cannot honour: refused, never silently ignored. */
function rejectUnsupported(body: CompletionRequest): void {
  if (body.suffix) throw invalidRequest('suffix is not supported.', 'suffix');
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0) throw invalidRequest('logit_bias is not supported.', 'logit_bias');
  if (body.best_of !== null && body.best_of !== undefined && body.best_of !== (body.n ?? 1)) throw invalidRequest('best_of other than n is not supported.', 'best_of');
}

/** Builds response objects and stream chunks for one request. */
export class CompletionShape {
  /** Per prompt, its echoed log-probabilities, built once for all its choices (n × a long prompt's top entries would otherwise be built n times on the HTTP thread). */
  private readonly promptParts = new Map<number, PromptLogprobs>();

  constructor(
    private readonly envelope: ResponseEnvelope,
    private readonly tokenizer: Tokenizer,
    private readonly prompts: readonly PreparedPrompt[],
    private readonly n: number,
    private readonly echo: boolean,
    private readonly logprobs: boolean,
    /** Per prompt, with echo + logprobs. */
    private readonly promptScores?: readonly PromptScores[],
  ) {}

  private prompt(index: number): PreparedPrompt {
    return this.prompts[Math.floor(index / this.n)]!;
  }

  private scores(index: number): PromptScores | undefined {
    return this.promptScores?.[Math.floor(index / this.n)];
  }

  private promptPart(index: number): PromptLogprobs {
    const key = Math.floor(index / this.n);
    let part = this.promptParts.get(key);
    if (!part) {
      const b = new LogprobsBuilder(this.tokenizer);
      b.addPrompt(this.prompt(index).tokens, this.scores(index));
      part = b.takePart();
      this.promptParts.set(key, part);
    }
    return part;
  }

  private framing(includeUsage: boolean): ChunkFraming<'text_completion', CompletionChoice> {
    return new ChunkFraming(this.envelope, 'text_completion', includeUsage, this.promptTokens());
  }

  /** max_tokens 0: the echoed prompts (with their log-probabilities), each choice finished at once by its length limit. */
  async *promptOnlyChunks(includeUsage: boolean): AsyncGenerator<CompletionResponse> {
    const framing = this.framing(includeUsage);
    for (let index = 0; index < this.prompts.length * this.n; index++) {
      const p = this.prompt(index);
      const lp = this.logprobs ? new LogprobsBuilder(this.tokenizer) : undefined;
      lp?.addPart(this.promptPart(index));
      yield framing.chunk({ text: p.text, index, logprobs: lp?.take() ?? null, finish_reason: 'length' });
    }
    yield* framing.usageChunk(0);
  }

  response(events: GenerationEvent[][]): CompletionResponse {
    let completionTokens = 0;
    const choices = events.map((evs, index): CompletionChoice => {
      const lp = this.logprobs ? new LogprobsBuilder(this.tokenizer) : undefined;
      let text = '';
      if (this.echo) {
        text = this.prompt(index).text;
        lp?.addPart(this.promptPart(index));
      }
      // No events: max_tokens 0, finished by the length limit before any token.
      let finish: FinishReasonWire | null = evs.length === 0 ? 'length' : null;
      for (const e of evs) {
        if (e.type === 'token') lp?.addToken(e);
        else {
          finish = e.reason;
          completionTokens += e.completionTokens;
          lp?.addText(e.text);
        }
        text += e.text;
      }
      return { text, index, logprobs: lp?.take() ?? null, finish_reason: finish };
    });
    return { ...this.envelope.fields('text_completion'), choices, usage: usage(this.promptTokens(), completionTokens) };
  }

  chunks(fanout: Fanout, includeUsage: boolean): AsyncGenerator<CompletionResponse> {
    const builders = new Map<number, LogprobsBuilder>();
    const logprobsOf = (index: number, add: (b: LogprobsBuilder) => void): CompletionLogprobs | null => {
      if (!this.logprobs) return null;
      let b = builders.get(index);
      if (!b) builders.set(index, (b = new LogprobsBuilder(this.tokenizer)));
      add(b);
      return b.take();
    };
    const echoed = this.echoedChoices(logprobsOf);
    const choiceOf = ({ index, event }: ChoiceEvent): CompletionChoice | undefined => {
      if (event.type === 'finish') return { text: event.text, index, logprobs: logprobsOf(index, (b) => b.addText(event.text)), finish_reason: event.reason };
      // A token that completes no character yet is worth a chunk only for its logprob.
      if (!event.text && !this.logprobs) return undefined;
      return { text: event.text, index, logprobs: logprobsOf(index, (b) => b.addToken(event)), finish_reason: null };
    };
    return generationChunks(fanout, this.framing(includeUsage), echoed, choiceOf);
  }

  /** With echo, each choice's prompt first (and its log-probabilities). */
  private *echoedChoices(logprobsOf: (index: number, add: (b: LogprobsBuilder) => void) => CompletionLogprobs | null): Generator<CompletionChoice> {
    if (!this.echo) return;
    for (let index = 0; index < this.prompts.length * this.n; index++) {
      const p = this.prompt(index);
      yield { text: p.text, index, logprobs: logprobsOf(index, (b) => b.addPart(this.promptPart(index))), finish_reason: null };
    }
  }

  /** Each prompt counts once, however many choices it has (as OpenAI bills it). */
  private promptTokens(): number {
    return this.prompts.reduce((a, p) => a + p.tokens.length, 0);
  }
}

/**
 * Legacy logprobs as parallel arrays. `text_offset` is each token's character offset in the
 * choice's text (echoed prompt included), counted over the text actually returned. Echoed prompt
 * tokens carry their log-probabilities given the tokens before them (the first token: null), with
 * the top alternatives and the token itself among the top entries, as vLLM returns them.
 */
class LogprobsBuilder {
  private offset = 0;
  private pending: CompletionLogprobs = empty();

  constructor(private readonly tokenizer: Tokenizer) {}

  addPrompt(tokens: readonly number[], scores?: PromptScores): void {
    const decoder = this.tokenizer.createDecoder();
    for (const [i, t] of tokens.entries()) {
      const logprob = scores?.logprobs[i] ?? null;
      const alternatives = scores?.top[i];
      let top: Record<string, number> | null = null;
      if (alternatives && logprob !== null) {
        top = {};
        for (const alt of alternatives) top[this.tokenizer.tokenText(alt.token)] = alt.logprob;
        top[this.tokenizer.tokenText(t)] = logprob;
      }
      this.push(t, logprob, top);
      this.offset += decoder.push(t).length;
    }
    this.offset += decoder.flush().length;
  }

  addToken(e: TokenEvent): void {
    const top: Record<string, number> = {};
    for (const alt of e.top ?? []) top[this.tokenizer.tokenText(alt.token)] = alt.logprob;
    // As vLLM: the sampled token is always among the top entries.
    const logprob = eventLogprob(e);
    top[this.tokenizer.tokenText(e.token)] = logprob;
    this.push(e.token, logprob, top);
    this.offset += e.text.length;
  }

  /** A prompt's entries as built once (takePart), at the start of a choice: copied as they are (the top entries' objects shared), not spelled again. */
  addPart(part: PromptLogprobs): void {
    // A loop, not push(...): a long prompt's entries would overflow the argument limit.
    const e = part.entries;
    for (let i = 0; i < e.tokens.length; i++) {
      this.pending.tokens.push(e.tokens[i]!);
      this.pending.token_logprobs.push(e.token_logprobs[i]!);
      this.pending.top_logprobs.push(e.top_logprobs[i]!);
      this.pending.text_offset.push(this.offset + e.text_offset[i]!);
    }
    this.offset += part.length;
  }

  /** What was added so far, with the text length it covers (for addPart). */
  takePart(): PromptLogprobs {
    return { entries: this.take(), length: this.offset };
  }

  /** Text released without a token (held-back text at the end). */
  addText(text: string): void {
    this.offset += text.length;
  }

  /** The entries since the last take (the whole choice when not streaming). */
  take(): CompletionLogprobs {
    const out = this.pending;
    this.pending = empty();
    return out;
  }

  private push(token: number, logprob: number | null, top: Record<string, number> | null): void {
    this.pending.tokens.push(this.tokenizer.tokenText(token));
    this.pending.token_logprobs.push(logprob);
    this.pending.top_logprobs.push(top);
    this.pending.text_offset.push(this.offset);
  }
}

/** A prompt's echoed log-probabilities and the length of its text. */
interface PromptLogprobs {
  entries: CompletionLogprobs;
  length: number;
}

function empty(): CompletionLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}
