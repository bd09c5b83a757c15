/** Shared fixtures of the model-store tests: real directories under os.tmpdir(), real child processes. */
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import type { EntryOrigin, EntryRecipe, EntryWriter } from '../../src/service/model-store/index.ts';
import { storeKey } from '../../src/service/model-store/index.ts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const storeModule = path.join(repoRoot, 'src/service/model-store/index.ts');

/** A fresh directory removed when the test ends. */
export async function tempDir(t: TestContext, prefix = 'mop-store-'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  t.after(async () => {
    await fs.chmod(dir, 0o755).catch(() => undefined);
    // Retried: an after hook registered later (a StoreSync's stop) may not have run yet, and its poll can still write here.
    await fs.rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });
  return dir;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A recipe-shaped JSON object (the store hashes whatever fields it has). */
export function recipe(overrides: EntryRecipe = {}): EntryRecipe {
  return {
    strategy: 'mop',
    criterion: 'ppl',
    target: 0.4,
    calibrationDigest: sha256('calibration text'),
    samples: 32,
    seqLen: 128,
    seed: 0,
    recovery: null,
    ...overrides,
  };
}

/** An origin and its key; `n` makes distinct entries. */
export function origin(n = 0): EntryOrigin & { key: string } {
  const o = { sourceDigest: sha256('source model'), recipe: recipe({ seed: n }) };
  return { ...o, key: storeKey(o.sourceDigest, o.recipe) };
}

/** A writer that creates these files (paths may contain '/'). */
export function filesWriter(files: Record<string, string | Uint8Array>): EntryWriter {
  return async (dir) => {
    for (const [name, content] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await fs.writeFile(path.join(dir, name), content);
    }
  };
}

export const sampleFiles = { 'config.json': '{"layers": 3}\n', 'model.safetensors': new Uint8Array(4096).fill(7), 'report.json': '{}\n' };

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run an ES module body in a new Node process with tsx, `store` bound to the model-store module and
 * `args` to the extra arguments. Bounded in time.
 */
export function runStoreChild(body: string, args: string[] = [], options: SpawnOptions = {}, timeoutMs = 60_000): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawnStoreChild(body, args, { timeout: timeoutMs, ...options });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** The same child, running: for tests that kill it at a moment of their choosing. */
export function spawnStoreChild(body: string, args: string[] = [], options: SpawnOptions = {}): ChildProcess {
  const script = `const store = await import(${JSON.stringify(storeModule)}); const args = process.argv.slice(1);\n${body}`;
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], ...options });
}

/** Poll `condition` every 10 ms until it holds or `timeoutMs` passes. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Names in a directory (empty when it does not exist). */
export async function namesIn(dir: string): Promise<string[]> {
  return (await fs.readdir(dir).catch(() => [] as string[])).sort();
}
