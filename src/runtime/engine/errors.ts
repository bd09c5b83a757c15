/** The prompt (plus requested tokens) does not fit the context the model is served with. */
export class ContextLengthError extends Error {
  override name = 'ContextLengthError';
}
