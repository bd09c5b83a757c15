/**
 * Errors a user can fix (a bad target, an unknown strategy, a calibration file that is missing or
 * too short, a model that cannot be pruned as asked). The CLI prints these as one line; the server
 * maps them to 400s. Anything else thrown from src/mop is a bug.
 */
export class MopInputError extends Error {
  override name = 'MopInputError';
}
