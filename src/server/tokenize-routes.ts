/**
 * POST /tokenize and POST /detokenize, in vLLM's shape: a prompt (or a chat, rendered as
 * /v1/chat/completions renders it) to token ids with the context length, and token ids back to
 * text. The fields are checked here; the tokenizing runs on the server's tokenizer thread
 * (tokenize-thread.ts), as a body near the size limit takes seconds to encode.
 */
import { z } from 'zod';
import type { ChatTemplate } from './chat-template.ts';
import { parseBody } from './endpoint.ts';
import { invalidRequest, modelNotFound } from './errors.ts';
import { chatRequestSchema } from './protocol.ts';
import type { ModelService } from '../service/model-service.ts';
import type { ServedVariant } from '../service/variants/served-variant.ts';
import { runTokenizeJob, type TokenizeJob, type TokenizeResult, type TokenizeThread } from './tokenize-thread.ts';

/** The paths these routes answer on (vLLM serves them outside /v1 too). */
export const TOKENIZE_PATHS = ['/tokenize', '/detokenize'] as const;

export interface TokenizeDeps {
  service: Pick<ModelService, 'resolve'>;
  chatTemplate: ChatTemplate;
  /** Where tokenizing runs; absent: inline, with the variant's tokenizer (an app built in a test). */
  tokenizeThread?: TokenizeThread | undefined;
}

/** vLLM's TokenizeResponse; `token_strs` only when asked for. */
export interface TokenizeResponse {
  count: number;
  max_model_len: number;
  tokens: number[];
  token_strs?: string[];
}

export interface DetokenizeResponse {
  prompt: string;
}

// The chat endpoint's own message schema, so both routes accept the same conversations.
const messagesSchema = chatRequestSchema({ maxN: 1 }).shape.messages;

const tokenizeSchema = z.object({
  model: z.string().nullish(),
  prompt: z.string().optional(),
  messages: messagesSchema.optional(),
  add_special_tokens: z.boolean().nullish(),
  add_generation_prompt: z.boolean().nullish(),
  continue_final_message: z.boolean().nullish(),
  return_token_strs: z.boolean().nullish(),
});
type TokenizeRequest = z.infer<typeof tokenizeSchema>;

const detokenizeSchema = z.object({
  model: z.string().nullish(),
  tokens: z.array(z.number().int(), { error: 'must be an array of integer token ids' }),
});

/** `signal`: the client's connection; closing it gives up the tokenizing. */
export async function handleTokenize(json: unknown, deps: TokenizeDeps, signal?: AbortSignal): Promise<TokenizeResponse> {
  const body = parseBody(tokenizeSchema, json);
  const variant = resolve(deps, body.model);
  const job = body.messages !== undefined ? chatJob(body) : promptJob(body);
  const { tokens = [], tokenStrs } = await run(deps, variant, job, signal);
  return { count: tokens.length, max_model_len: variant.maxContext, tokens, ...(tokenStrs && { token_strs: tokenStrs }) };
}

export async function handleDetokenize(json: unknown, deps: TokenizeDeps, signal?: AbortSignal): Promise<DetokenizeResponse> {
  const body = parseBody(detokenizeSchema, json);
  const variant = resolve(deps, body.model);
  const vocab = variant.tokenizer.vocabSize;
  const bad = body.tokens.findIndex((t) => !(t >= 0 && t < vocab));
  if (bad >= 0) throw invalidRequest(`Token id ${body.tokens[bad]} at position ${bad} is out of vocabulary (valid ids are 0..${vocab - 1}).`, 'tokens');
  const { text = '' } = await run(deps, variant, { op: 'detokenize', tokens: body.tokens }, signal);
  return { prompt: text };
}

function run(deps: TokenizeDeps, variant: ServedVariant, job: TokenizeJob, signal: AbortSignal | undefined): Promise<TokenizeResult> {
  if (deps.tokenizeThread) return deps.tokenizeThread.run(job, signal);
  return Promise.resolve(runTokenizeJob(job, variant.tokenizer, deps.chatTemplate));
}

function resolve(deps: TokenizeDeps, model: string | null | undefined): ServedVariant {
  const variant = deps.service.resolve(model);
  if (!variant) throw modelNotFound(model!);
  return variant;
}

/** A text prompt: BOS first unless add_special_tokens is false (as /v1/completions encodes it, by default). */
function promptJob(body: TokenizeRequest): TokenizeJob {
  if (body.prompt === undefined) throw invalidRequest('Give either `prompt` (a text) or `messages` (a chat) to tokenize.', 'prompt');
  for (const field of ['add_generation_prompt', 'continue_final_message'] as const) {
    if (body[field] != null) throw invalidRequest(`${field} applies to \`messages\` only; this request tokenizes a \`prompt\`.`, field);
  }
  return { op: 'prompt', text: body.prompt, addBos: body.add_special_tokens ?? true, tokenStrs: body.return_token_strs ?? false };
}

/**
 * A chat rendered through the chat template, ending with the assistant cue unless
 * add_generation_prompt is false: the very tokens /v1/chat/completions would prefill. The prompt
 * already starts with exactly one BOS (the template's or the tokenizer's), so add_special_tokens
 * adds none on top of it.
 */
function chatJob(body: TokenizeRequest): TokenizeJob {
  if (body.prompt !== undefined) throw invalidRequest('Give either `prompt` or `messages`, not both.', 'messages');
  if (body.continue_final_message) {
    throw invalidRequest('continue_final_message is not supported: send add_generation_prompt false to get the conversation without the assistant cue.', 'continue_final_message');
  }
  return { op: 'chat', messages: body.messages!, addGenerationPrompt: body.add_generation_prompt ?? true, tokenStrs: body.return_token_strs ?? false };
}
