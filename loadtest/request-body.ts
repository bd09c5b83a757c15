/**
 * The JSON body of request i. The k6 script builds the same one, field for field (a test compares
 * them), including the shared preamble that `sharedPrefixWords` puts before every prompt.
 */
import type { ResolvedLoadOptions } from './options.ts';
import { mix32, promptIndex } from './prompts.ts';

/** The words of the shared preamble; the k6 script has the same list. */
export const PREFIX_WORDS = ['the', 'assistant', 'answers', 'every', 'question', 'with', 'care', 'and', 'a', 'short', 'clear', 'story', 'about', 'small', 'animals', 'in', 'green', 'fields', 'near', 'old', 'town'];

/**
 * The same `words`-word preamble before every prompt, as a chat app's system prompt is: a server
 * with a prefix cache prefills it once. '' for 0; otherwise words drawn by mix32, then a blank line.
 */
export function sharedPrefix(words: number): string {
  if (words === 0) return '';
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(PREFIX_WORDS[mix32(i + 1) % PREFIX_WORDS.length]!);
  return out.join(' ') + '.\n\n';
}

/** The JSON body of request `i`: the k6 script builds the same one (a test compares them). */
export function buildRequestBody(o: ResolvedLoadOptions, prompts: readonly string[], i: number, prefix = sharedPrefix(o.sharedPrefixWords)): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (o.models.length > 0) body.model = o.models[i % o.models.length];
  body.prompt = prefix + prompts[promptIndex(i, prompts.length, o.promptOrder, o.seed)];
  body.max_tokens = o.maxTokens;
  body.temperature = o.temperature;
  if (o.ignoreEos) body.ignore_eos = true;
  Object.assign(body, o.extraBody);
  body.stream = o.stream;
  if (o.stream && o.includeUsage) body.stream_options = { include_usage: true };
  return body;
}
