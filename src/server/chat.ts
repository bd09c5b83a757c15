/**
 * POST /v1/chat/completions: messages rendered through the variant's chat template into one
 * prompt, n choices generated from it. JSON `chat.completion`, or `chat.completion.chunk` SSE
 * deltas: a role chunk per choice first, then content, then an empty delta with the finish reason.
 */
import { eventLogprob, type GenerationEvent, type GenerationRequest, type TokenEvent } from '../runtime/engine/sequence.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import type { EndpointContext } from './endpoint.ts';
import { parseBody, resolveVariant } from './endpoint.ts';
import { invalidRequest } from './errors.ts';
import { type ChoiceEvent, Fanout } from './fanout.ts';
import { answerGenerations, ChunkFraming, generationChunks, ResponseEnvelope } from './generation-response.ts';
import { resolveMaxTokens } from './prompt.ts';
import {
  type ChatCompletionChoice,
  type ChatCompletionChunk,
  type ChatCompletionChunkChoice,
  type ChatCompletionResponse,
  type ChatRequest,
  type ChatTokenLogprob,
  chatRequestSchema,
  type FinishReasonWire,
  usage,
} from './protocol.ts';
import { samplingParams, stopList } from './sampling.ts';
import { checkRequestedGrammar, requestedGrammar } from './structured-output.ts';

export async function handleChatCompletion(json: unknown, ctx: EndpointContext): Promise<Response> {
  const body: ChatRequest = parseBody(chatRequestSchema(ctx.limits), json);
  const variant = resolveVariant(ctx, body.model);
  if (body.tools && body.tools.length > 0) throw invalidRequest('tools are not supported.', 'tools');
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0) throw invalidRequest('logit_bias is not supported.', 'logit_bias');
  const wantLogprobs = body.logprobs ?? false;
  if (!wantLogprobs && body.top_logprobs !== null && body.top_logprobs !== undefined) {
    throw invalidRequest('top_logprobs requires logprobs to be true.', 'top_logprobs');
  }

  const grammar = requestedGrammar(body);
  const { tokenizer } = variant;
  const promptTokens = ctx.chatTemplate.encode(body.messages, tokenizer);
  const n = body.n ?? 1;
  if (n > ctx.limits.maxChoices) throw invalidRequest(`n=${n} is more generations than this server can hold at once (${ctx.limits.maxChoices}).`, 'n');
  const maxParam = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  // OpenAI's chat default: no limit but the context.
  const maxTokens = resolveMaxTokens(promptTokens.length, body.max_completion_tokens ?? body.max_tokens, undefined, variant.maxContext, 'messages', maxParam);
  const logprobs = wantLogprobs ? (body.top_logprobs ?? 0) : undefined;
  const stop = stopList(body.stop);
  if (grammar) await checkRequestedGrammar(variant, grammar, ctx.log);
  const requests: GenerationRequest[] = [];
  for (let j = 0; j < n; j++) {
    requests.push({ promptTokens, maxTokens, sampling: samplingParams(body, logprobs, j), stop, ignoreEos: body.ignore_eos ?? false, ...(grammar && { grammar: grammar.spec }) });
  }

  const fanout = new Fanout(variant, ctx.metrics, requests, ctx.signal);
  return answerGenerations(ctx, fanout, body, new ChatShape(new ResponseEnvelope('chatcmpl', variant.id), tokenizer, promptTokens.length, n, wantLogprobs));
}

/** Builds the `chat.completion` response and `chat.completion.chunk` deltas for one request. */
class ChatShape {
  constructor(
    private readonly envelope: ResponseEnvelope,
    private readonly tokenizer: Tokenizer,
    private readonly promptTokens: number,
    private readonly n: number,
    private readonly logprobs: boolean,
  ) {}

  response(events: GenerationEvent[][]): ChatCompletionResponse {
    let completionTokens = 0;
    const choices = events.map((evs, index): ChatCompletionChoice => {
      let content = '';
      let finish: FinishReasonWire | null = null;
      const lp: ChatTokenLogprob[] = [];
      for (const e of evs) {
        content += e.text;
        if (e.type === 'token') {
          if (this.logprobs) lp.push(this.tokenLogprob(e));
        } else {
          finish = e.reason;
          completionTokens += e.completionTokens;
        }
      }
      return {
        index,
        message: { role: 'assistant', content, refusal: null },
        logprobs: this.logprobs ? { content: lp, refusal: null } : null,
        finish_reason: finish,
      };
    });
    return { ...this.envelope.fields('chat.completion'), choices, usage: usage(this.promptTokens, completionTokens) };
  }

  /** A role delta per choice first, then content deltas, then an empty delta with the finish reason. */
  chunks(fanout: Fanout, includeUsage: boolean): AsyncGenerator<ChatCompletionChunk> {
    const roles = Array.from({ length: this.n }, (_, index): ChatCompletionChunkChoice => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }));
    const choiceOf = ({ index, event }: ChoiceEvent): ChatCompletionChunkChoice | undefined => {
      if (event.type === 'finish') return { index, delta: event.text ? { content: event.text } : {}, logprobs: null, finish_reason: event.reason };
      if (!event.text && !this.logprobs) return undefined;
      return { index, delta: { content: event.text }, logprobs: this.logprobs ? { content: [this.tokenLogprob(event)], refusal: null } : null, finish_reason: null };
    };
    return generationChunks(fanout, new ChunkFraming(this.envelope, 'chat.completion.chunk', includeUsage, this.promptTokens), roles, choiceOf);
  }

  private tokenLogprob(e: TokenEvent): ChatTokenLogprob {
    const entry = (token: number, logprob: number) => ({ token: this.tokenizer.tokenText(token), logprob, bytes: Array.from(this.tokenizer.tokenBytes(token)) });
    return { ...entry(e.token, eventLogprob(e)), top_logprobs: (e.top ?? []).map((t) => entry(t.token, t.logprob)) };
  }
}
