/**
 * Where a generation request's prompt is encoded (and an echoed token-id prompt decoded): a small
 * one inline on the HTTP thread, a larger one on the tokenizer threads (tokenize-thread.ts), so that a prompt of megabytes never holds up
 * the requests, health probes and scrapes behind it. Either way the tokens are the same (one
 * piece of work, runTokenizeJob) and so are the refusals.
 */
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import type { ChatTemplate } from './chat-template.ts';
import type { EndpointContext } from './endpoint.ts';
import type { ChatMessage } from './protocol.ts';
import { runTokenizeJob, type TokenizeJob, type TokenizeResult, type TokenizeThread } from './tokenize-thread.ts';

/**
 * Size (characters of text, plus one per JSON value) up to which a prompt is encoded inline: the
 * HTTP thread spends little more on it than on a round trip to a thread, and a short prompt never
 * waits in the threads' queue behind a long one. Beyond it the encode grows without bound
 * (docs/architecture.md, "Threads and data flow").
 */
export const INLINE_ENCODE_MAX_SIZE = 1024;

/** What encoding a request's prompt needs. */
export interface PromptEncoding {
  /** The tokenizer threads; absent: everything inline (an app built without them). */
  thread: Pick<TokenizeThread, 'run'> | undefined;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate;
  /** The client's connection: a wait on a thread ends when it closes. */
  signal: AbortSignal;
}

/** Each text's tokens, BOS first (a completions prompt). */
export async function encodeTexts(texts: string[], encoding: PromptEncoding): Promise<number[][]> {
  const { tokenLists } = await tokenize({ op: 'prompts', texts, addBos: true }, texts, encoding);
  return tokenLists!;
}

/** A conversation rendered through the chat template, with the assistant cue; `tools` fill the template's tools. */
export async function encodeChat(messages: ChatMessage[], tools: unknown[] | undefined, encoding: PromptEncoding): Promise<number[]> {
  const job: TokenizeJob = { op: 'chat', messages, addGenerationPrompt: true, tokenStrs: false, ...(tools && { tools }) };
  const { tokens } = await tokenize(job, [messages, tools], encoding);
  return tokens!;
}

/** Token ids as text (an echoed token-id prompt). */
export async function decodeTokens(tokens: number[], encoding: PromptEncoding): Promise<string> {
  const { text } = await tokenize({ op: 'detokenize', tokens }, tokens, encoding);
  return text!;
}

function tokenize(job: TokenizeJob, input: unknown, encoding: PromptEncoding): Promise<TokenizeResult> | TokenizeResult {
  if (encoding.thread && exceedsSize(input, INLINE_ENCODE_MAX_SIZE)) return encoding.thread.run(job, encoding.signal);
  return runTokenizeJob(job, encoding.tokenizer, encoding.chatTemplate);
}

/**
 * Whether a JSON value's strings' characters, plus one per value and per key (and its characters), add up
 * to more than `limit`. Stops as soon as they do, so a huge value costs no more than a small one.
 */
export function exceedsSize(value: unknown, limit: number): boolean {
  let left = limit;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const v = pending.pop();
    left -= 1;
    if (typeof v === 'string') left -= v.length;
    else if (Array.isArray(v)) {
      left -= v.length;
      if (left >= 0) pending.push(...v);
    } else if (v !== null && typeof v === 'object') {
      for (const key in v) {
        left -= key.length + 1;
        if (left < 0) return true;
        pending.push((v as Record<string, unknown>)[key]);
      }
    }
    if (left < 0) return true;
  }
  return false;
}

/** How a generation request encodes its prompt: the app's threads and template, the variant's tokenizer, the client's connection. */
export function requestEncoding(ctx: Pick<EndpointContext, 'tokenizeThread' | 'chatTemplate' | 'signal'>, tokenizer: Tokenizer): PromptEncoding {
  return { thread: ctx.tokenizeThread, tokenizer, chatTemplate: ctx.chatTemplate, signal: ctx.signal };
}
