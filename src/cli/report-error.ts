/**
 * Errors a user can fix (bad path, corrupt file, bad flag) are printed as one line without a stack
 * trace; anything else is a bug and keeps its stack. Returns the exit code.
 */
const userErrors = new Set(['ModelFormatError', 'TokenizerError', 'ContextLengthError', 'DeviceError', 'SamplingParamsError', 'CommanderError', 'InvalidArgumentError', 'ConfigError', 'ChatTemplateError', 'MopInputError', 'StoreWriteError', 'StoreInputError', 'ManifestVersionError', 'QuantizationShapeError']);

export function reportCliError(err: unknown): number {
  if (err instanceof Error && userErrors.has(err.name)) {
    process.stderr.write(`mop: error: ${err.message}\n`);
    return 1;
  }
  process.stderr.write(`mop: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 70;
}
