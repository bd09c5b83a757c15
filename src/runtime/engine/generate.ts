import type { Tokenizer } from '../tokenizer/types.ts';
import { ContextLengthError, InvalidRequestError } from './errors.ts';
import type { DecoderSession } from './decoder-session.ts';
import { type GenerationEvent, type GenerationRequest, Sequence } from './sequence.ts';

/**
 * Generate for one request on a session it has to itself (CLI, tests): prefill, then one decode
 * step per token until EOS, a stop string, max tokens, the end of the context or an abort.
 */
export async function* generate(
  session: DecoderSession,
  tokenizer: Tokenizer,
  request: GenerationRequest,
  slot = 0,
): AsyncGenerator<GenerationEvent> {
  const prompt = request.promptTokens;
  if (prompt.length === 0) throw new InvalidRequestError('the prompt has no tokens');
  if (prompt.length >= session.maxContext) {
    throw new ContextLengthError(`the prompt has ${prompt.length} tokens; the context holds ${session.maxContext} (prompt + at least one generated token)`);
  }
  if (!(Number.isInteger(request.maxTokens) && request.maxTokens >= 1)) throw new InvalidRequestError(`maxTokens must be a positive integer, got ${request.maxTokens}`);
  const seq = new Sequence(request, tokenizer, session.spec.vocabSize);
  session.reset(slot);
  try {
    let logits = await session.prefill(slot, prompt);
    for (;;) {
      if (request.signal?.aborted) {
        yield seq.finish('abort');
        return;
      }
      const events = seq.step(logits);
      yield* events;
      if (seq.finished) return;
      if (session.length(slot) >= session.maxContext) {
        yield seq.finish('length');
        return;
      }
      const token = seq.generatedTokens[seq.generatedTokens.length - 1]!;
      [logits] = (await session.decode([{ slot, token }])) as [Float32Array];
    }
  } finally {
    session.reset(slot);
  }
}

/** Collect a whole generation into text and counts (for callers that do not stream). */
export async function generateText(session: DecoderSession, tokenizer: Tokenizer, request: GenerationRequest): Promise<{ text: string; tokens: number[]; finishReason: string }> {
  let text = '';
  const tokens: number[] = [];
  let finishReason = 'length';
  for await (const e of generate(session, tokenizer, request)) {
    text += e.text;
    if (e.type === 'token') tokens.push(e.token);
    else finishReason = e.reason;
  }
  return { text, tokens, finishReason };
}
