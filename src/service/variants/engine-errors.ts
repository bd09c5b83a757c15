import { ContextLengthError, EngineStepError, InvalidRequestError, RequestAbortedError, RequestTimeoutError } from '../../runtime/engine/errors.ts';
import { QueueFullError, SchedulerClosedError } from '../../runtime/engine/scheduler-types.ts';
import { GrammarError } from '../../runtime/grammar/grammar-spec.ts';
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

/** Errors that cross the thread boundary by class name, rebuilt as the same class on this side. */
const wireErrorClasses: Record<string, new (message: string) => Error> = {
  QueueFullError,
  SchedulerClosedError,
  ContextLengthError,
  InvalidRequestError,
  RangeError,
  EngineStepError,
  RequestTimeoutError,
  RequestAbortedError,
  GrammarError,
};

/** The typed error a worker's refusal stands for, so the HTTP layer maps it as it would locally. */
export function fromWireError(e: WireError): Error {
  const Class = Object.hasOwn(wireErrorClasses, e.name) ? wireErrorClasses[e.name] : undefined;
  if (Class) return new Class(e.message);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}
