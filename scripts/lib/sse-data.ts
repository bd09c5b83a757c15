import { SseParser } from '../../loadtest/sse.ts';

/** The `data` payload of every Server-Sent Event in a response body, as each event completes ([DONE] included). */
export async function* sseData(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const parser = new SseParser();
  const decoder = new TextDecoder();
  for await (const part of body) yield* parser.push(decoder.decode(part, { stream: true }));
  yield* parser.end();
}

/** The `data` payloads of an SSE body already read whole. */
export function sseDataOf(text: string): string[] {
  const parser = new SseParser();
  return [...parser.push(text), ...parser.end()];
}
