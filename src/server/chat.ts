/**
 * POST /v1/chat/completions: messages (and offered tools) rendered through the variant's chat
 * template into one prompt, n choices generated from it. JSON `chat.completion`, or
 * `chat.completion.chunk` SSE deltas: a role chunk per choice first, then content, then an empty
 * delta with the finish reason. With tools, an answer's tool calls (in the template's format) come
 * back as `tool_calls` with `finish_reason: "tool_calls"`; streamed, as OpenAI sends them: a delta
 * with the call's id and name, then one with its arguments.
 */
import { eventLogprob, type GenerationEvent, type GenerationRequest, type TokenEvent } from '../runtime/engine/sequence.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import type { EndpointContext } from './endpoint.ts';
import { parseBody, resolveVariant } from './endpoint.ts';
import { invalidRequest } from './errors.ts';
import { type ChoiceEvent, Fanout } from './fanout.ts';
import { answerGenerations, ChunkFraming, generationChunks, ResponseEnvelope } from './generation-response.ts';
import { resolveMaxTokens } from './prompt.ts';
import { encodeChat, requestEncoding } from './prompt-encoding.ts';
import {
  type ChatCompletionChoice,
  type ChatCompletionChunk,
  type ChatCompletionChunkChoice,
  type ChatCompletionResponse,
  type ChatRequest,
  type ChatTokenLogprob,
  chatRequestSchema,
  type FinishReasonWire,
  type ToolCallWire,
  usage,
} from './protocol.ts';
import { samplingParams, stopList } from './sampling.ts';
import { checkRequestedGrammar, type RequestedGrammar, requestedGrammar } from './structured-output.ts';
import { parseToolCalls, type ToolCall } from './tool-calls.ts';
import { controlMarker, toolParseText, type ToolUse, toolUseOf } from './tool-calls-request.ts';
import { ToolCallStream } from './tool-calls-stream.ts';

export async function handleChatCompletion(json: unknown, ctx: EndpointContext): Promise<Response> {
  const body: ChatRequest = parseBody(chatRequestSchema(ctx.limits), json);
  const variant = resolveVariant(ctx, body.model);
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0) throw invalidRequest('logit_bias is not supported.', 'logit_bias');
  const wantLogprobs = body.logprobs ?? false;
  if (!wantLogprobs && body.top_logprobs !== null && body.top_logprobs !== undefined) {
    throw invalidRequest('top_logprobs requires logprobs to be true.', 'top_logprobs');
  }

  const { tokenizer } = variant;
  const tools = toolUseOf(body, ctx.chatTemplate, tokenizer);
  const grammar: RequestedGrammar | undefined = tools?.grammar ? { spec: tools.grammar, param: 'tool_choice' } : requestedGrammar(body);
  const promptTokens = await encodeChat(body.messages, tools && (body.tools ?? []), requestEncoding(ctx, tokenizer));
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
  return answerGenerations(ctx, fanout, body, new ChatShape(new ResponseEnvelope('chatcmpl', variant.id), tokenizer, promptTokens.length, n, wantLogprobs, tools));
}

/** A parsed call as a response message carries it. */
function wireCall(call: ToolCall): ToolCallWire {
  return { id: call.id, type: 'function', function: { ...call.function } };
}

/** Builds the `chat.completion` response and `chat.completion.chunk` deltas for one request. */
class ChatShape {
  constructor(
    private readonly envelope: ResponseEnvelope,
    private readonly tokenizer: Tokenizer,
    private readonly promptTokens: number,
    private readonly n: number,
    private readonly logprobs: boolean,
    private readonly tools: ToolUse | undefined,
  ) {}

  response(events: GenerationEvent[][]): ChatCompletionResponse {
    let completionTokens = 0;
    const choices = events.map((evs, index): ChatCompletionChoice => {
      let text = '';
      let finish: FinishReasonWire | null = null;
      const lp: ChatTokenLogprob[] = [];
      let parseText = '';
      for (const e of evs) {
        text += e.text;
        if (this.tools) parseText += toolParseText(e, this.tools);
        if (e.type === 'token') {
          if (this.logprobs) lp.push(this.tokenLogprob(e));
        } else {
          finish = e.reason;
          completionTokens += e.completionTokens;
        }
      }
      const parsed = this.tools ? parseToolCalls(this.tools.format, parseText, this.tools.functions, this.tools.parallel) : undefined;
      const calls = parsed?.toolCalls ?? [];
      return {
        index,
        message: { role: 'assistant', content: calls.length > 0 ? parsed!.content : text, refusal: null, ...(calls.length > 0 && { tool_calls: calls.map((c) => wireCall(c)) }) },
        logprobs: this.logprobs ? { content: lp, refusal: null } : null,
        finish_reason: calls.length > 0 && finish === 'stop' ? 'tool_calls' : finish,
      };
    });
    return { ...this.envelope.fields('chat.completion'), choices, usage: usage(this.promptTokens, completionTokens) };
  }

  /** A role delta per choice first, then content deltas, then an empty delta with the finish reason. */
  chunks(fanout: Fanout, includeUsage: boolean): AsyncGenerator<ChatCompletionChunk> {
    const roles = Array.from({ length: this.n }, (_, index): ChatCompletionChunkChoice => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }));
    const tools = this.tools;
    const streams = tools ? Array.from({ length: this.n }, () => new ToolCallStream(tools)) : undefined;
    const choiceOf = ({ index, event }: ChoiceEvent): ChatCompletionChunkChoice | ChatCompletionChunkChoice[] | undefined => {
      if (event.type === 'finish') {
        if (!streams) return { index, delta: event.text ? { content: event.text } : {}, logprobs: null, finish_reason: event.reason };
        return this.finishWithCalls(index, event.reason, streams[index]!.finish(event.text));
      }
      const content = streams ? streams[index]!.push(event.text, controlMarker(event, tools!)) : event.text;
      if (!content && !this.logprobs) return undefined;
      return { index, delta: { content }, logprobs: this.logprobs ? { content: [this.tokenLogprob(event)], refusal: null } : null, finish_reason: null };
    };
    return generationChunks(fanout, new ChunkFraming(this.envelope, 'chat.completion.chunk', includeUsage, this.promptTokens), roles, choiceOf);
  }

  /** A streamed choice's end with tools: content left, then per call its id + name and its arguments, then the finish. */
  private finishWithCalls(index: number, reason: FinishReasonWire, end: { content: string; toolCalls: ToolCall[] }): ChatCompletionChunkChoice[] {
    const out: ChatCompletionChunkChoice[] = [];
    const delta = (d: ChatCompletionChunkChoice['delta']): ChatCompletionChunkChoice => ({ index, delta: d, logprobs: null, finish_reason: null });
    if (end.content) out.push(delta({ content: end.content }));
    end.toolCalls.forEach((call, k) => {
      out.push(delta({ tool_calls: [{ index: k, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] }));
      out.push(delta({ tool_calls: [{ index: k, function: { arguments: call.function.arguments } }] }));
    });
    out.push({ index, delta: {}, logprobs: null, finish_reason: end.toolCalls.length > 0 && reason === 'stop' ? 'tool_calls' : reason });
    return out;
  }

  private tokenLogprob(e: TokenEvent): ChatTokenLogprob {
    const entry = (token: number, logprob: number) => ({ token: this.tokenizer.tokenText(token), logprob, bytes: Array.from(this.tokenizer.tokenBytes(token)) });
    return { ...entry(e.token, eventLogprob(e)), top_logprobs: (e.top ?? []).map((t) => entry(t.token, t.logprob)) };
  }
}
