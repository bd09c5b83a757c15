/**
 * Prompts → token ids, and the checks that keep a request inside the context window. Every
 * failure is a 400 naming the field, with both lengths when the context is the problem (the
 * message vLLM users know: "This model's maximum context length is ...").
 */
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { invalidRequest } from './errors.ts';
import { decodeTokens, encodeTexts, type PromptEncoding } from './prompt-encoding.ts';

/** One prompt of a request: its tokens and the text `echo` returns. */
export interface PreparedPrompt {
  tokens: number[];
  /** The prompt as text, when the request echoes it: the string sent, or the token ids decoded ('' otherwise). */
  text: string;
}

/** What preparing a request's prompts checks and keeps. */
export interface PromptNeeds {
  /** The model's context: a longer prompt is refused before anything else is done with it. */
  context: number;
  /** Whether the prompts' text is returned (a token-id prompt is decoded only then). */
  echo: boolean;
}

/**
 * A completions `prompt` in any of its four forms → one PreparedPrompt per prompt. Strings are
 * encoded with BOS (off the HTTP thread when large: prompt-encoding.ts); token arrays are taken as
 * given (as vLLM does), checked against the vocabulary and the context, and decoded (off the HTTP
 * thread when large) only to be echoed.
 */
export async function preparePrompts(prompt: string | string[] | number[] | number[][], encoding: PromptEncoding, needs: PromptNeeds): Promise<PreparedPrompt[]> {
  const whole = () => 'prompt';
  const item = (i: number) => `prompt[${i}]`;
  if (typeof prompt === 'string') return fromTexts([prompt], encoding, needs, whole);
  if (prompt.length === 0) throw invalidRequest('The prompt is empty.', 'prompt');
  if (typeof prompt[0] === 'number') return fromTokens([prompt as number[]], encoding, needs, whole);
  if (typeof prompt[0] === 'string') return fromTexts(prompt as string[], encoding, needs, item);
  return fromTokens(prompt as number[][], encoding, needs, item);
}

/** How many prompts a completions `prompt` holds (one string or one token-id array is one). */
export function promptCount(prompt: string | string[] | number[] | number[][]): number {
  return typeof prompt === 'string' || prompt.length === 0 || typeof prompt[0] === 'number' ? 1 : prompt.length;
}

/** Every text checked before any is encoded (all in one piece of work). */
async function fromTexts(texts: string[], encoding: PromptEncoding, needs: PromptNeeds, param: (i: number) => string): Promise<PreparedPrompt[]> {
  const empty = texts.findIndex((t) => t.length === 0);
  if (empty >= 0) throw invalidRequest('The prompt is empty.', param(empty));
  const tokenLists = await encodeTexts(texts, encoding);
  tokenLists.forEach((tokens, i) => checkPromptFits(tokens.length, needs.context, param(i)));
  return texts.map((text, i) => ({ tokens: tokenLists[i]!, text: needs.echo ? text : '' }));
}

/** Every token-id prompt checked before any is decoded. */
async function fromTokens(lists: number[][], encoding: PromptEncoding, needs: PromptNeeds, param: (i: number) => string): Promise<PreparedPrompt[]> {
  lists.forEach((tokens, i) => checkTokenIds(tokens, encoding.tokenizer, needs.context, param(i)));
  const out: PreparedPrompt[] = [];
  for (const tokens of lists) out.push({ tokens, text: needs.echo ? await decodeTokens(tokens, encoding) : '' });
  return out;
}

function checkTokenIds(tokens: number[], tokenizer: Tokenizer, context: number, param: string): void {
  if (tokens.length === 0) throw invalidRequest('The prompt is empty.', param);
  checkPromptFits(tokens.length, context, param);
  const vocab = tokenizer.vocabSize;
  const bad = tokens.findIndex((t) => !(Number.isInteger(t) && t >= 0 && t < vocab));
  if (bad >= 0) throw invalidRequest(`Token id ${tokens[bad]} at position ${bad} is out of vocabulary (valid ids are 0..${vocab - 1}).`, param);
}

/** A prompt longer than the context is refused whatever else the request asks (it could be neither scored nor continued). */
export function checkPromptFits(promptLength: number, context: number, param: string): void {
  if (promptLength > context) {
    throw invalidRequest(`This model's maximum context length is ${context} tokens, but the prompt has ${promptLength} tokens. Please shorten the prompt.`, param, 'context_length_exceeded');
  }
}

/**
 * How many tokens to generate for a prompt: the requested max_tokens if prompt + max_tokens fits
 * the context, else a 400; without a request, `fallback` clamped to what is left (undefined =
 * everything that is left, OpenAI's chat default).
 */
export function resolveMaxTokens(
  promptLength: number,
  requested: number | null | undefined,
  fallback: number | undefined,
  context: number,
  promptParam: string,
  maxTokensParam: string,
): number {
  const room = context - promptLength;
  if (room < 1) {
    throw invalidRequest(
      `This model's maximum context length is ${context} tokens, but the prompt has ${promptLength} tokens (at least one token must remain for the completion). Please shorten the prompt.`,
      promptParam,
      'context_length_exceeded',
    );
  }
  if (requested !== null && requested !== undefined) {
    if (requested > room) {
      throw invalidRequest(
        `This model's maximum context length is ${context} tokens. However, you requested ${promptLength + requested} tokens (${promptLength} in the prompt, ${requested} in the completion). Please reduce the length of the prompt or ${maxTokensParam}.`,
        maxTokensParam,
        'context_length_exceeded',
      );
    }
    return requested;
  }
  return Math.min(fallback ?? room, room);
}
