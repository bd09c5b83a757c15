/**
 * The one place where errors from the service and the engines become what a client is answered
 * (an OpenAI-shaped ApiError: a JSON body before headers, an SSE error event after) and the
 * outcome `mop_requests_total` counts. Anything unexpected is logged here and answered as a bare
 * 500 (internals stay in the log).
 */
import { ContextLengthError, EngineStepError, InvalidRequestError, RequestAbortedError, RequestTimeoutError } from '../runtime/engine/errors.ts';
import { QueueFullError, SchedulerClosedError } from '../runtime/engine/scheduler-types.ts';
import { GrammarError } from '../runtime/grammar/grammar-spec.ts';
import { EngineStalledError, VariantUnavailableError } from '../service/variants/engine-errors.ts';
import { ApiError, internalError, invalidRequest, queueFull, unavailable } from './errors.ts';
import type { RequestOutcome } from './metrics.ts';

/** Seconds a client told "queue full" should wait before retrying. */
export const RETRY_AFTER_SECONDS = 1;

const SHUTTING_DOWN = 'The server is shutting down and takes no new requests.';


/** `param`: the request field a context-length error names (prompt, prompt[i], messages). */
export function toApiError(e: unknown, log: (line: string) => void, param = 'prompt'): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof QueueFullError) return queueFull(RETRY_AFTER_SECONDS);
  if (e instanceof SchedulerClosedError) return unavailable(SHUTTING_DOWN);
  if (e instanceof ContextLengthError) return invalidRequest(e.message, param, 'context_length_exceeded');
  // A stalled engine is a kind of unavailable one: checked first for its own code.
  if (e instanceof EngineStalledError) return unavailable(e.message, 'engine_stalled');
  if (e instanceof VariantUnavailableError) return unavailable(e.message, 'model_unavailable');
  // The variant logged the step's cause once; every request it carried gets this.
  // The cause (ONNX Runtime's or the device's message) is in the log; the client learns what happened, not the internals.
  if (e instanceof EngineStepError) return new ApiError(500, 'The model failed while generating this request; the server logged the cause. Retry; if it persists, tell the operator.', 'server_error', null, 'engine_error');
  if (e instanceof RequestTimeoutError) return unavailable(e.message, 'request_timeout');
  if (e instanceof RequestAbortedError) return new ApiError(400, e.message, 'invalid_request_error', null, 'client_closed_request');
  // The engine's own refusals of a request; any other error (a RangeError from V8 or an engine invariant included) is ours.
  if (e instanceof InvalidRequestError) return invalidRequest(e.message);
  // A structured output the model could not continue (endpoints check grammars before they stream, naming the field).
  if (e instanceof GrammarError) return invalidRequest(`The structured output cannot be produced: ${e.message}`, null, 'invalid_grammar');
  log(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  return internalError();
}

/** How a request that ended with this error is counted. */
export function outcomeOf(err: ApiError): RequestOutcome {
  switch (err.code) {
    case 'request_timeout':
      return 'timeout';
    case 'client_closed_request':
      return 'aborted';
    case 'engine_error':
      return 'error';
  }
  switch (err.status) {
    case 400:
    case 415:
      return 'invalid';
    case 401:
      return 'unauthorized';
    case 403:
      return 'forbidden';
    case 404:
      return 'not_found';
    case 413:
      return 'too_large';
    case 429:
      return 'rejected';
    case 503:
      return 'unavailable';
    default:
      return 'error';
  }
}
