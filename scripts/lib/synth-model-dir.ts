import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from './repo-root.ts';

/**
 * A synthetic preset on disk, written once and reused: bench-out/synth-<preset>/, made by
 * `mop synth --preset <preset>` from the sources (no build needed) when it is missing. A directory
 * without config.json is a half-written one from an interrupted run and is written again.
 */
export function synthModelDir(preset: string, log: (line: string) => void): string {
  const dir = path.join(repoRoot, 'bench-out', `synth-${preset}`);
  if (fs.existsSync(path.join(dir, 'config.json'))) {
    log(`reusing ${path.relative(repoRoot, dir)}`);
    return dir;
  }
  fs.rmSync(dir, { recursive: true, force: true });
  log(`writing the synthetic '${preset}' model: mop synth --preset ${preset} --out ${path.relative(repoRoot, dir)}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli/mop.ts'), 'synth', '--preset', preset, '--out', dir], { cwd: repoRoot, stdio: 'inherit', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`mop synth --preset ${preset} failed (exit ${r.status ?? r.signal}); run it by hand to see why`);
  return dir;
}
