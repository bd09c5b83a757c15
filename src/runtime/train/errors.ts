/** A recovery option or input a user can fix (bad learning rate, rank, data too short, …); one line. */
export class RecoveryInputError extends Error {
  override name = 'RecoveryInputError';
}
