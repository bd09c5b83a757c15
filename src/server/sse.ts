/**
 * Server-sent events the way OpenAI streams: `data: <json>\n\n` per chunk, then `data: [DONE]\n\n`.
 * The stream is pull-based (a chunk is produced when the socket can take it) and cancelling it
 * (client gone) stops the producer, which aborts the generations behind it.
 */
import type { OpenAIErrorBody } from './errors.ts';

const encoder = new TextEncoder();

const frame = (data: string): Uint8Array => encoder.encode(`data: ${data}\n\n`);

/** How long a stream may sit with a chunk its client does not take, and what to tell when it gives up. */
export interface StreamStall {
  /** Milliseconds; 0 or absent: wait as long as the request lives. */
  ms?: number;
  /** Called once when the stream is given up (its generations are cancelled, the connection closed). */
  onStall?: () => void;
}

/**
 * A streaming Response from `chunks`. A failure mid-stream is sent as an OpenAI error object in
 * its own event (the status line is long gone), followed by [DONE], as vLLM does. A client that
 * stops reading (its connection open, its socket full) is given up after `stall.ms`: otherwise its
 * generations would run on and their events pile up in memory for as long as it holds on.
 */
export function sseResponse(chunks: AsyncIterable<unknown>, onError: (e: unknown) => OpenAIErrorBody, stall: StreamStall = {}): Response {
  const it = chunks[Symbol.asyncIterator]();
  let closed = false;
  // When the last chunk was handed over, and whether the stream is waiting for the next one (not stalled: the model is working).
  let handedAt = performance.now();
  let pulling = false;
  let watch: ReturnType<typeof setInterval> | undefined;
  const stop = () => {
    clearInterval(watch);
    watch = undefined;
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const ms = stall.ms ?? 0;
      if (ms <= 0) return;
      watch = setInterval(() => {
        if (closed || pulling || performance.now() - handedAt < ms) return;
        closed = true;
        stop();
        stall.onStall?.();
        void it.return?.();
        controller.error(new Error(`the client read nothing for ${ms} ms`));
      }, Math.min(1000, Math.max(10, ms / 4)));
      watch.unref();
    },
    async pull(controller) {
      pulling = true;
      try {
        const { value, done } = await it.next();
        if (closed) return;
        if (done) {
          closed = true;
          stop();
          controller.enqueue(frame('[DONE]'));
          controller.close();
          return;
        }
        controller.enqueue(frame(JSON.stringify(value)));
      } catch (e) {
        if (closed) return;
        closed = true;
        stop();
        controller.enqueue(frame(JSON.stringify(onError(e))));
        controller.enqueue(frame('[DONE]'));
        controller.close();
      } finally {
        pulling = false;
        handedAt = performance.now();
      }
    },
    async cancel() {
      closed = true;
      stop();
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
