/**
 * What a generation endpoint handler gets from the app: the served variants, metrics, limits
 * from the configuration, and the client connection's abort signal.
 */
import { fromZodError, modelNotFound, type OpenAIErrorBody } from './errors.ts';
import { toApiError } from './service-errors.ts';
import type { ServerMetrics } from './metrics.ts';
import type { ModelService } from '../service/model-service.ts';
import type { ServedVariant } from '../service/variants/served-variant.ts';
import type { ChatTemplate } from './chat-template.ts';
import type { StreamStall } from './sse.ts';
import type { TokenizeThread } from './tokenize-thread.ts';
import type { z } from 'zod';

export interface EndpointLimits {
  /** max_tokens of a completions request that omits it. */
  maxTokensDefault: number;
  /** Largest n. */
  maxN: number;
  /** Most generations (prompts × n) one request may start: more could never be admitted. */
  maxChoices: number;
  /** A stream whose client reads nothing for this long is given up; 0 = never (--stream-stall-ms). */
  streamStallMs: number;
}

export interface EndpointContext {
  service: Pick<ModelService, 'resolve'>;
  /** How chat messages become a prompt (the checkpoint's template, or --chat-template). */
  chatTemplate: ChatTemplate;
  /** Where a prompt that is not small is encoded (prompt-encoding.ts); absent: inline. */
  tokenizeThread?: TokenizeThread | undefined;
  /** The variant this request resolved to, once it has (so a failure is counted under it, not drawn again). */
  variant?: ServedVariant;
  metrics: ServerMetrics;
  limits: EndpointLimits;
  /** Aborted when the client disconnects. */
  signal: AbortSignal;
  /** Set once a Fanout took the request: from then on it counts the outcome, not the app. */
  counted?: boolean;
  /** Where unexpected errors are logged. */
  log: (line: string) => void;
}

/** Validate a parsed JSON body against a schema; the first violation becomes a 400 naming the field. */
export function parseBody<S extends z.ZodType>(schema: S, json: unknown): z.infer<S> {
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw fromZodError(parsed.error);
  return parsed.data;
}

/** The variant a request's `model` field resolves to (once: an A/B split is drawn here); 404 for an unknown id. */
export function resolveVariant(ctx: EndpointContext, model: string | null | undefined): ServedVariant {
  const variant = ctx.service.resolve(model);
  if (!variant) throw modelNotFound(model!);
  ctx.variant = variant;
  return variant;
}

/** How long a stream may wait on a client that reads nothing, and the log line when it gives up. */
export function streamStall(ctx: EndpointContext): StreamStall {
  const ms = ctx.limits.streamStallMs;
  return { ms, onStall: () => ctx.log(`a streaming client read nothing for ${ms} ms: its generations are cancelled and its connection closed`) };
}

/** How a stream reports a failure after its headers are sent: the same mapping as before them. */
export function streamErrorBody(ctx: EndpointContext): (e: unknown) => OpenAIErrorBody {
  return (e) => toApiError(e, ctx.log).toBody();
}
