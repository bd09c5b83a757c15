import { ContextLengthError, EngineStepError, RequestAbortedError, RequestTimeoutError } from '../../runtime/engine/errors.ts';
import { QueueFullError, SchedulerClosedError } from '../../runtime/engine/scheduler-types.ts';
import type { WireError } from './engine-protocol.ts';

/**
 * A variant's engine cannot take or finish requests: its worker died (the requests it held fail
 * with this), is being restarted, or was given up on. The HTTP layer answers 503.
 */
export class VariantUnavailableError extends Error {
  override name = 'VariantUnavailableError';
  constructor(
    readonly variant: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A variant's engine has not been heard from (or has been inside one model step) for longer than
 * the stall limit: its requests fail at once rather than wait on a thread that may never answer.
 */
export class EngineStalledError extends VariantUnavailableError {
  override name = 'EngineStalledError';
}

/** The typed error a worker's refusal stands for, so the HTTP layer maps it as it would locally. */
export function fromWireError(e: WireError): Error {
  switch (e.name) {
    case 'QueueFullError':
      return new QueueFullError(e.message);
    case 'SchedulerClosedError':
      return new SchedulerClosedError(e.message);
    case 'ContextLengthError':
      return new ContextLengthError(e.message);
    case 'RangeError':
      return new RangeError(e.message);
    case 'EngineStepError':
      return new EngineStepError(e.message);
    case 'RequestTimeoutError':
      return new RequestTimeoutError(e.message);
    case 'RequestAbortedError':
      return new RequestAbortedError(e.message);
    default: {
      const err = new Error(e.message);
      err.name = e.name;
      return err;
    }
  }
}
