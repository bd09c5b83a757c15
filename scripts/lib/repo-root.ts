import path from 'node:path';

/** The repository's root directory, wherever a script is run from. */
export const repoRoot = path.resolve(import.meta.dirname, '../..');
