/**
 * A request the engine cannot run as asked (an empty prompt, a token budget below one): the
 * client's to fix, answered 400. Every other error thrown while serving is the server's.
 */
export class InvalidRequestError extends Error {
  override name = 'InvalidRequestError';
}

/** The prompt (plus requested tokens) does not fit the context the model is served with. */
export class ContextLengthError extends Error {
  override name = 'ContextLengthError';
}

/** A model step failed (an ONNX Runtime error, out of memory): the requests it carried end with this. */
export class EngineStepError extends Error {
  override name = 'EngineStepError';
}

/** A request that was not finished within its deadline (`--request-timeout-ms`) and has no finish reason to carry it (prompt scoring). */
export class RequestTimeoutError extends Error {
  override name = 'RequestTimeoutError';
}

/** The client went away, or stopped reading, before the request finished. */
export class RequestAbortedError extends Error {
  override name = 'RequestAbortedError';
}
