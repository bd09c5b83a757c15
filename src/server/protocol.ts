/**
 * The wire format: request schemas (zod) and response/chunk types for /v1/completions and
 * /v1/chat/completions, field for field as OpenAI documents them, plus the vLLM sampling
 * extensions (top_k, min_p, repetition_penalty, ignore_eos) and structured outputs in OpenAI's
 * (`response_format`) and vLLM's (`structured_outputs`, `guided_*`) shapes. Unknown fields are
 * ignored, as vLLM does, so clients written for newer API versions still work; fields we cannot
 * honour (suffix, logit_bias) are rejected rather than silently dropped.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';

/** OpenAI's limits. */
export const MAX_STOP_SEQUENCES = 4;
/** Longest stop string: the engine checks every held-back suffix against it at every token, so its length costs each step of the variant's batch. */
export const MAX_STOP_CHARS = 256;
export const MAX_COMPLETION_LOGPROBS = 5;
export const MAX_CHAT_TOP_LOGPROBS = 20;

/** Limits that come from the server's configuration. */
export interface ProtocolLimits {
  maxN: number;
}

// Range (0..vocab-1) is checked against the variant's tokenizer in prompt.ts.
const tokenId = z.number().int();
const safeInt = z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER);

/** A JSON Schema: an object, or (vLLM's guided_json, structured_outputs.json) its JSON text. */
const jsonSchemaObject = z.record(z.string(), z.unknown(), { error: 'must be a JSON Schema object' });
const jsonSchemaOrText = z.union([jsonSchemaObject, z.string()], { error: 'must be a JSON Schema (an object, or its JSON text)' });

/** OpenAI's `response_format`. */
export const responseFormatSchema = z.discriminatedUnion(
  'type',
  [
    z.object({ type: z.literal('text') }),
    z.object({ type: z.literal('json_object') }),
    z.object({
      type: z.literal('json_schema'),
      json_schema: z.object({
        name: z.string().nullish(),
        description: z.string().nullish(),
        schema: jsonSchemaObject.nullish(),
        strict: z.boolean().nullish(),
      }),
    }),
  ],
  { error: "must be an object whose type is 'text', 'json_object' or 'json_schema'" },
);
export type ResponseFormat = z.infer<typeof responseFormatSchema>;

/** vLLM's `structured_outputs` (one of json, regex, choice, grammar, json_object). */
export const structuredOutputsSchema = z.object({
  json: jsonSchemaOrText.nullish(),
  regex: z.string().nullish(),
  choice: z.array(z.string()).min(1, 'must list at least one choice').nullish(),
  grammar: z.string().nullish(),
  json_object: z.boolean().nullish(),
  // vLLM's layout switch: output here is always compact, so it changes nothing.
  disable_any_whitespace: z.boolean().nullish(),
});
export type StructuredOutputs = z.infer<typeof structuredOutputsSchema>;

/** Structured-output fields both endpoints accept. */
const structuredOutputFields = {
  response_format: responseFormatSchema.nullish(),
  structured_outputs: structuredOutputsSchema.nullish(),
  // vLLM's older names for the same constraints.
  guided_json: jsonSchemaOrText.nullish(),
  guided_regex: z.string().nullish(),
  guided_choice: z.array(z.string()).min(1, 'must list at least one choice').nullish(),
  guided_grammar: z.string().nullish(),
};

/** Fields the two endpoints share: sampling, stopping, streaming. */

const stopString = z.string().max(MAX_STOP_CHARS, `a stop string of at most ${MAX_STOP_CHARS} characters`);

function commonFields(limits: ProtocolLimits) {
  return {
    model: z.string().nullish(),
    max_tokens: z.number().int().min(1, 'must be at least 1').nullish(),
    temperature: z.number().min(0, 'must be in [0, 2]').max(2, 'must be in [0, 2]').nullish(),
    top_p: z.number().gt(0, 'must be in (0, 1]').max(1, 'must be in (0, 1]').nullish(),
    n: z
      .number()
      .int()
      .min(1, 'must be at least 1')
      .max(limits.maxN, `must be at most ${limits.maxN} on this server (MOP_MAX_N)`)
      .nullish(),
    stream: z.boolean().nullish(),
    stream_options: z
      .object({
        include_usage: z.boolean().nullish(),
      })
      .nullish(),
    stop: z
      .union([stopString, z.array(stopString).max(MAX_STOP_SEQUENCES, `at most ${MAX_STOP_SEQUENCES} stop sequences`)], {
        error: `must be a string or an array of at most ${MAX_STOP_SEQUENCES} strings`,
      })
      .nullish(),
    seed: safeInt.nullish(),
    presence_penalty: z.number().min(-2, 'must be in [-2, 2]').max(2, 'must be in [-2, 2]').nullish(),
    frequency_penalty: z.number().min(-2, 'must be in [-2, 2]').max(2, 'must be in [-2, 2]').nullish(),
    user: z.string().nullish(),
    logit_bias: z.record(z.string(), z.number()).nullish(),
    // vLLM extensions.
    top_k: z.number().int().min(-1, 'must be -1 or 0 (off) or a positive integer').nullish(),
    min_p: z.number().min(0, 'must be in [0, 1]').max(1, 'must be in [0, 1]').nullish(),
    repetition_penalty: z.number().gt(0, 'must be > 0 (1 = off)').max(100).nullish(),
    ignore_eos: z.boolean().nullish(),
    ...structuredOutputFields,
  };
}

const PROMPT_FORMS = 'must be a string, an array of strings, an array of token ids or an array of token-id arrays';

type PromptValue = string | string[] | number[] | number[][];

const isTokenId = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);

/**
 * Where `v` (a prompt array) first breaks the form its first element says it is in, or null when
 * it holds to it. One pass that stops at the first bad element: a huge array costs one look, where
 * z.union would check it against every form and build one issue per element.
 */
function firstPromptProblem(v: unknown[]): string | null {
  const first = v[0];
  const bad = (is: (x: unknown) => boolean, what: string) => {
    const i = v.findIndex((x) => !is(x));
    return i < 0 ? null : `prompt[${i}] must be ${what}, as prompt[0] is`;
  };
  if (v.length === 0 || typeof first === 'number') return bad(isTokenId, 'an integer token id');
  if (typeof first === 'string') return bad((x) => typeof x === 'string', 'a string');
  if (Array.isArray(first)) {
    for (const [i, list] of v.entries()) {
      if (!Array.isArray(list)) return `prompt[${i}] must be an array of token ids, as prompt[0] is`;
      const j = list.findIndex((x) => !isTokenId(x));
      if (j >= 0) return `prompt[${i}][${j}] must be an integer token id`;
    }
    return null;
  }
  return 'prompt[0] is neither a string, a token id nor an array of token ids';
}

/** `prompt`: a string, several strings, a token array or several token arrays (each a choice group). */
export const promptSchema = z.unknown().transform((v, ctx): PromptValue => {
  if (typeof v === 'string') return v;
  const problem = Array.isArray(v) ? firstPromptProblem(v) : 'not a string or an array';
  if (problem === null) return v as PromptValue;
  ctx.issues.push({ code: 'custom', input: v, message: `${PROMPT_FORMS} (${problem})` });
  return z.NEVER;
});

export function completionRequestSchema(limits: ProtocolLimits) {
  return z.object({
    ...commonFields(limits),
    prompt: promptSchema,
    // 0 generates nothing: with echo, the prompt and its log-probabilities are the answer (how
    // evaluation harnesses score log-likelihoods, as OpenAI's legacy completions and vLLM accept).
    max_tokens: z.number().int().min(0, 'must be at least 0').nullish(),
    logprobs: z
      .number()
      .int()
      .min(0, `must be in [0, ${MAX_COMPLETION_LOGPROBS}]`)
      .max(MAX_COMPLETION_LOGPROBS, `must be in [0, ${MAX_COMPLETION_LOGPROBS}]`)
      .nullish(),
    echo: z.boolean().nullish(),
    suffix: z.string().nullish(),
    best_of: z.number().int().min(1).nullish(),
  });
}
export type CompletionRequest = z.infer<ReturnType<typeof completionRequestSchema>>;

const textPart = z.object({ type: z.literal('text'), text: z.string() });

/** A call an assistant message made (sent back in the conversation that answers it). */
const messageToolCall = z.object({
  id: z.string(),
  type: z.literal('function').optional(),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

const chatMessage = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(textPart), z.null()], { error: 'must be a string or an array of text parts' }).optional(),
  name: z.string().optional(),
  /** Assistant messages: the calls it made. */
  tool_calls: z.array(messageToolCall).nullish(),
  /** Tool messages: the call this answers. */
  tool_call_id: z.string().nullish(),
});
export type ChatMessage = z.infer<typeof chatMessage>;

/** OpenAI's `tools[i]`: a function the model may call. */
const toolSchema = z.object({
  type: z.literal('function', { error: "only 'function' tools exist" }),
  function: z.object({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, underscores or dashes'),
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown(), { error: 'must be a JSON Schema object' }).nullish(),
    strict: z.boolean().nullish(),
  }),
});
export type ToolDefinition = z.infer<typeof toolSchema>;

export const toolChoiceSchema = z.union(
  [z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), function: z.object({ name: z.string() }) })],
  { error: "must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": …}}" },
);
export type ToolChoice = z.infer<typeof toolChoiceSchema>;

export function chatRequestSchema(limits: ProtocolLimits) {
  return z.object({
    ...commonFields(limits),
    messages: z.array(chatMessage).min(1, 'must contain at least one message'),
    max_completion_tokens: z.number().int().min(1, 'must be at least 1').nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z
      .number()
      .int()
      .min(0, `must be in [0, ${MAX_CHAT_TOP_LOGPROBS}]`)
      .max(MAX_CHAT_TOP_LOGPROBS, `must be in [0, ${MAX_CHAT_TOP_LOGPROBS}]`)
      .nullish(),
    tools: z.array(toolSchema).max(128, 'at most 128 tools').nullish(),
    tool_choice: toolChoiceSchema.nullish(),
    parallel_tool_calls: z.boolean().nullish(),
  });
}
export type ChatRequest = z.infer<ReturnType<typeof chatRequestSchema>>;

/**
 * Why a choice ended. 'stop' and 'length' are OpenAI's; 'abort' (the server aborted it while
 * shutting down) and 'timeout' (MOP_REQUEST_TIMEOUT_MS passed) are ours, so a truncated answer is
 * never mistaken for one that hit max_tokens.
 */
export type FinishReasonWire = 'stop' | 'length' | 'abort' | 'timeout' | 'tool_calls';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Legacy completions logprobs: parallel arrays, one entry per token. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

export interface CompletionChoice {
  text: string;
  index: number;
  logprobs: CompletionLogprobs | null;
  finish_reason: FinishReasonWire | null;
}

/** Both the JSON response and each SSE chunk (OpenAI uses one shape for both). */
export interface CompletionResponse {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  system_fingerprint: string | null;
  choices: CompletionChoice[];
  usage?: Usage | null;
}

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
}

export interface ChatTokenLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

export interface ChatLogprobs {
  content: ChatTokenLogprob[] | null;
  refusal: null;
}

/** A tool call in an answer; in a stream chunk, `index` says which call a delta continues. */
export interface ToolCallWire {
  index?: number;
  id?: string;
  type?: 'function';
  function: { name?: string; arguments: string };
}

export interface ChatCompletionChoice {
  index: number;
  message: { role: 'assistant'; content: string | null; refusal: null; tool_calls?: ToolCallWire[] };
  logprobs: ChatLogprobs | null;
  finish_reason: FinishReasonWire | null;
}

export interface ChatCompletionResponse {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  system_fingerprint: string | null;
  choices: ChatCompletionChoice[];
  usage: Usage;
}

export interface ChatCompletionChunkChoice {
  index: number;
  delta: { role?: 'assistant'; content?: string; tool_calls?: ToolCallWire[] };
  logprobs: ChatLogprobs | null;
  finish_reason: FinishReasonWire | null;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  system_fingerprint: string | null;
  choices: ChatCompletionChunkChoice[];
  usage?: Usage | null;
}

export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  /** Ours: total parameters of this variant. */
  parameters: number;
  /** Ours: fraction of the dense model's block parameters removed (0 = dense). */
  compression_ratio: number;
  /** Ours: the context length the variant is served with. */
  max_model_len: number;
}

export interface ModelList {
  object: 'list';
  data: ModelCard[];
}

/** Response ids: OpenAI's prefix plus 32 hex digits. */
export function responseId(prefix: 'cmpl' | 'chatcmpl'): string {
  return `${prefix}-${randomUUID().replaceAll('-', '')}`;
}

/** Unix seconds, OpenAI's `created`. */
export function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}

export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}
