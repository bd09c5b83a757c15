/**
 * The data directory: the only place files named in admin requests (calibration, recovery data)
 * may come from, so a request cannot read other server files, nor learn whether they exist. The
 * operator's own settings (`--prune-calibration`, `mop prune`) are not confined.
 */
import { promises as fs } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { packageRoot } from '../../runtime/model/load.ts';

/** The bundled data/ directory (calibration, recovery and held-out text): the default data directory. */
export function bundledDataDir(): string {
  return resolve(packageRoot(), 'data');
}

/**
 * The real path (symlinks resolved) of `requested`, a path relative to `dataDir` or absolute, when
 * it names an existing entry under realpath(dataDir); undefined otherwise — whatever the reason, so
 * the caller's answer cannot tell a missing file from one outside the directory.
 */
export async function resolveUnderDataDir(requested: string, dataDir: string = bundledDataDir()): Promise<string | undefined> {
  try {
    const root = await fs.realpath(dataDir);
    const real = await fs.realpath(resolve(root, requested));
    const rel = relative(root, real);
    if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return undefined;
    return real;
  } catch {
    return undefined;
  }
}
