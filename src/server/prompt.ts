/**
 * Prompts → token ids, and the checks that keep a request inside the context window. Every
 * failure is a 400 naming the field, with both lengths when the context is the problem (the
 * message vLLM users know: "This model's maximum context length is ...").
 */
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { invalidRequest } from './errors.ts';
import { encodeTexts, type PromptEncoding } from './prompt-encoding.ts';

/** One prompt of a request: its tokens and the text `echo` returns. */
export interface PreparedPrompt {
  tokens: number[];
  /** The prompt as text: the string sent, or the token ids decoded. */
  text: string;
}

/**
 * A completions `prompt` in any of its four forms → one PreparedPrompt per prompt. Strings are
 * encoded with BOS (off the HTTP thread when large: prompt-encoding.ts); token arrays are taken as
 * given (as vLLM does) and checked against the vocabulary.
 */
export async function preparePrompts(prompt: string | string[] | number[] | number[][], encoding: PromptEncoding): Promise<PreparedPrompt[]> {
  const { tokenizer } = encoding;
  if (typeof prompt === 'string') return fromTexts([prompt], encoding, () => 'prompt');
  if (prompt.length === 0) throw invalidRequest('The prompt is empty.', 'prompt');
  if (typeof prompt[0] === 'number') return [fromTokens(prompt as number[], tokenizer, 'prompt')];
  if (typeof prompt[0] === 'string') return fromTexts(prompt as string[], encoding, (i) => `prompt[${i}]`);
  return (prompt as number[][]).map((p, i) => fromTokens(p, tokenizer, `prompt[${i}]`));
}

/** Every text checked before any is encoded (all in one piece of work). */
async function fromTexts(texts: string[], encoding: PromptEncoding, param: (i: number) => string): Promise<PreparedPrompt[]> {
  const empty = texts.findIndex((t) => t.length === 0);
  if (empty >= 0) throw invalidRequest('The prompt is empty.', param(empty));
  const tokenLists = await encodeTexts(texts, encoding);
  return texts.map((text, i) => ({ tokens: tokenLists[i]!, text }));
}

function fromTokens(tokens: number[], tokenizer: Tokenizer, param: string): PreparedPrompt {
  if (tokens.length === 0) throw invalidRequest('The prompt is empty.', param);
  const vocab = tokenizer.vocabSize;
  const bad = tokens.findIndex((t) => !(Number.isInteger(t) && t >= 0 && t < vocab));
  if (bad >= 0) throw invalidRequest(`Token id ${tokens[bad]} at position ${bad} is out of vocabulary (valid ids are 0..${vocab - 1}).`, param);
  return { tokens, text: tokenizer.decode(tokens) };
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
