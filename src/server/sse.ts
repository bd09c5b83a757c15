/**
 * Server-sent events the way OpenAI streams: `data: <json>\n\n` per chunk, then `data: [DONE]\n\n`.
 * The stream is pull-based (a chunk is produced when the socket can take it) and cancelling it
 * (client gone) stops the producer, which aborts the generations behind it.
 */
import type { OpenAIErrorBody } from './errors.ts';

const encoder = new TextEncoder();

const frame = (data: string): Uint8Array => encoder.encode(`data: ${data}\n\n`);

/**
 * A streaming Response from `chunks`. A failure mid-stream is sent as an OpenAI error object in
 * its own event (the status line is long gone), followed by [DONE], as vLLM does.
 */
export function sseResponse(chunks: AsyncIterable<unknown>, onError: (e: unknown) => OpenAIErrorBody): Response {
  const it = chunks[Symbol.asyncIterator]();
  let closed = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await it.next();
        if (closed) return;
        if (done) {
          closed = true;
          controller.enqueue(frame('[DONE]'));
          controller.close();
          return;
        }
        controller.enqueue(frame(JSON.stringify(value)));
      } catch (e) {
        if (closed) return;
        closed = true;
        controller.enqueue(frame(JSON.stringify(onError(e))));
        controller.enqueue(frame('[DONE]'));
        controller.close();
      }
    },
    async cancel() {
      closed = true;
      await it.return?.();
    },
  });
  return new Response(body, {
    status: 200,
    headers: {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      // Tell reverse proxies (nginx) not to buffer the stream.
      'x-accel-buffering': 'no',
    },
  });
}
