/**
 * POST /v1/chat/completions: messages rendered through the variant's chat template into one
 * prompt, n choices generated from it. JSON `chat.completion`, or `chat.completion.chunk` SSE
 * deltas: a role chunk per choice first, then content, then an empty delta with the finish reason.
 */
import { eventLogprob, type GenerationEvent, type GenerationRequest, type TokenEvent } from '../runtime/engine/sequence.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import type { EndpointContext } from './endpoint.ts';
import { parseBody, streamErrorBody } from './endpoint.ts';
import { invalidRequest, modelNotFound } from './errors.ts';
import { Fanout } from './fanout.ts';
import { resolveMaxTokens } from './prompt.ts';
import {
  type ChatCompletionChoice,
  type ChatCompletionChunk,
  type ChatCompletionResponse,
  type ChatLogprobs,
  type ChatRequest,
  type ChatTokenLogprob,
  chatRequestSchema,
  type FinishReasonWire,
  responseId,
  unixNow,
  usage,
} from './protocol.ts';
import { samplingParams, stopList } from './sampling.ts';
import { sseResponse } from './sse.ts';

export async function handleChatCompletion(json: unknown, ctx: EndpointContext): Promise<Response> {
  const body: ChatRequest = parseBody(chatRequestSchema(ctx.limits), json);
  const variant = ctx.service.resolve(body.model);
  if (!variant) throw modelNotFound(body.model!);
  ctx.variant = variant;
  if (body.tools && body.tools.length > 0) throw invalidRequest('tools are not supported.', 'tools');
  if (body.response_format && body.response_format.type !== 'text') throw invalidRequest(`response_format ${body.response_format.type} is not supported.`, 'response_format');
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0) throw invalidRequest('logit_bias is not supported.', 'logit_bias');
  const wantLogprobs = body.logprobs ?? false;
  if (!wantLogprobs && body.top_logprobs !== null && body.top_logprobs !== undefined) {
    throw invalidRequest('top_logprobs requires logprobs to be true.', 'top_logprobs');
  }

  const { tokenizer } = variant;
  const promptTokens = ctx.chatTemplate.encode(body.messages, tokenizer);
  const n = body.n ?? 1;
  if (n > ctx.limits.maxChoices) throw invalidRequest(`n=${n} is more generations than this server can hold at once (${ctx.limits.maxChoices}).`, 'n');
  const maxParam = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  // OpenAI's chat default: no limit but the context.
  const maxTokens = resolveMaxTokens(promptTokens.length, body.max_completion_tokens ?? body.max_tokens, undefined, variant.maxContext, 'messages', maxParam);
  const logprobs = wantLogprobs ? (body.top_logprobs ?? 0) : undefined;
  const stop = stopList(body.stop);
  const requests: GenerationRequest[] = [];
  for (let j = 0; j < n; j++) {
    requests.push({ promptTokens, maxTokens, sampling: samplingParams(body, logprobs, j), stop, ignoreEos: body.ignore_eos ?? false });
  }

  const fanout = new Fanout(variant, ctx.metrics, requests, ctx.signal);
  ctx.counted = true;
  const shape = new ChatShape(responseId('chatcmpl'), variant.id, tokenizer, promptTokens.length, n, wantLogprobs);
  if (body.stream) return sseResponse(shape.chunks(fanout, body.stream_options?.include_usage ?? false), streamErrorBody(ctx));
  return Response.json(shape.response(await fanout.collect()));
}

class ChatShape {
  private readonly created = unixNow();

  constructor(
    private readonly id: string,
    private readonly model: string,
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
    return {
      id: this.id,
      object: 'chat.completion',
      created: this.created,
      model: this.model,
      system_fingerprint: null,
      choices,
      usage: usage(this.promptTokens, completionTokens),
    };
  }

  async *chunks(fanout: Fanout, includeUsage: boolean): AsyncGenerator<ChatCompletionChunk> {
    const extra = includeUsage ? { usage: null } : {};
    const chunk = (choice: ChatCompletionChunk['choices'][number]): ChatCompletionChunk => ({
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.model,
      system_fingerprint: null,
      choices: [choice],
      ...extra,
    });
    let completionTokens = 0;
    try {
      for (let index = 0; index < this.n; index++) {
        yield chunk({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
      }
      for await (const { index, event } of fanout.events()) {
        if (event.type === 'token') {
          if (!event.text && !this.logprobs) continue;
          const logprobs: ChatLogprobs | null = this.logprobs ? { content: [this.tokenLogprob(event)], refusal: null } : null;
          yield chunk({ index, delta: { content: event.text }, logprobs, finish_reason: null });
        } else {
          completionTokens += event.completionTokens;
          yield chunk({ index, delta: event.text ? { content: event.text } : {}, logprobs: null, finish_reason: event.reason });
        }
      }
      if (includeUsage) yield { ...chunk({ index: 0, delta: {}, logprobs: null, finish_reason: null }), choices: [], usage: usage(this.promptTokens, completionTokens) };
    } finally {
      fanout.abort();
    }
  }

  private tokenLogprob(e: TokenEvent): ChatTokenLogprob {
    const entry = (token: number, logprob: number) => ({ token: this.tokenizer.tokenText(token), logprob, bytes: Array.from(this.tokenizer.tokenBytes(token)) });
    return { ...entry(e.token, eventLogprob(e)), top_logprobs: (e.top ?? []).map((t) => entry(t.token, t.logprob)) };
  }
}
