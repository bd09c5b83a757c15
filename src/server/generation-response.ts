/**
 * What the two generation endpoints share in their answers (each keeps its own choice shapes):
 * the envelope every response and chunk carries, the framing of stream chunks under
 * `stream_options.include_usage`, the stream that aborts its generations however it ends, and
 * answering as SSE or as one JSON object.
 */
import type { GenerationEvent } from '../runtime/engine/sequence.ts';
import { type EndpointContext, streamErrorBody, streamStall } from './endpoint.ts';
import type { ChoiceEvent, Fanout } from './fanout.ts';
import { responseId, unixNow, type Usage, usage } from './protocol.ts';
import { sseResponse } from './sse.ts';

/** A stream chunk (OpenAI's shape for both endpoints): the envelope, its choices, and usage when asked for. */
export interface Chunk<O extends string, C> {
  id: string;
  object: O;
  created: number;
  model: string;
  system_fingerprint: string | null;
  choices: C[];
  usage?: Usage | null;
}

/** One request's id and creation time: the same on its response or on every one of its chunks. */
export class ResponseEnvelope {
  readonly id: string;
  readonly created = unixNow();

  constructor(
    prefix: 'cmpl' | 'chatcmpl',
    readonly model: string,
  ) {
    this.id = responseId(prefix);
  }

  /** The envelope fields, in OpenAI's order, for an object of type `object`. */
  fields<O extends string>(object: O) {
    return { id: this.id, object, created: this.created, model: this.model, system_fingerprint: null };
  }
}

/**
 * How a stream's chunks are framed: with `include_usage` every chunk carries `usage: null` and a
 * last chunk without choices carries the request's totals.
 */
export class ChunkFraming<O extends string, C> {
  constructor(
    private readonly envelope: ResponseEnvelope,
    private readonly object: O,
    private readonly includeUsage: boolean,
    private readonly promptTokens: number,
  ) {}

  chunk(choice: C): Chunk<O, C> {
    return { ...this.envelope.fields(this.object), choices: [choice], ...(this.includeUsage ? { usage: null } : {}) };
  }

  /** The usage chunk, when the client asked for one. */
  *usageChunk(completionTokens: number): Generator<Chunk<O, C>> {
    if (this.includeUsage) yield { ...this.envelope.fields(this.object), choices: [], usage: usage(this.promptTokens, completionTokens) };
  }
}

/**
 * A generation stream: the `lead` choices (before any event: echoed prompts, role deltas), then
 * each event's choice (`choiceOf` may skip one, or make several chunks of it), then the usage chunk, whose completion tokens are
 * summed from the finish events. However the consumer stops (client gone, stream cancelled, done),
 * the generations are aborted: nothing keeps generating for a gone client.
 */
export async function* generationChunks<O extends string, C>(
  fanout: Fanout,
  framing: ChunkFraming<O, C>,
  lead: Iterable<C>,
  choiceOf: (e: ChoiceEvent) => C | C[] | undefined,
): AsyncGenerator<Chunk<O, C>> {
  let completionTokens = 0;
  try {
    for (const choice of lead) yield framing.chunk(choice);
    for await (const e of fanout.events()) {
      if (e.event.type === 'finish') completionTokens += e.event.completionTokens;
      const choice = choiceOf(e);
      if (Array.isArray(choice)) for (const c of choice) yield framing.chunk(c);
      else if (choice !== undefined) yield framing.chunk(choice);
    }
    yield* framing.usageChunk(completionTokens);
  } finally {
    fanout.abort();
  }
}

/** The request's streaming fields. */
export interface StreamFields {
  stream?: boolean | null | undefined;
  stream_options?: { include_usage?: boolean | null | undefined } | null | undefined;
}

export const includeUsage = (body: StreamFields): boolean => body.stream_options?.include_usage ?? false;

/** What an endpoint builds its answer with: one JSON object from every event, or stream chunks. */
export interface GenerationShape {
  response(events: GenerationEvent[][]): unknown;
  chunks(fanout: Fanout, includeUsage: boolean): AsyncIterable<unknown>;
}

/** Answer with the fan-out's generations (which from now on count the request's outcome): SSE with `stream`, else JSON. */
export async function answerGenerations(ctx: EndpointContext, fanout: Fanout, body: StreamFields, shape: GenerationShape): Promise<Response> {
  ctx.counted = true;
  if (body.stream) return sseResponse(shape.chunks(fanout, includeUsage(body)), streamErrorBody(ctx), streamStall(ctx));
  return fanout.collect((events) => Response.json(shape.response(events)));
}
