/**
 * `mop serve` as a separate process (from the TypeScript sources, as test/helpers/run-cli.ts runs
 * the CLI), for tests that must kill a server with SIGKILL or freeze it with SIGSTOP and start
 * another one on the same files.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** Every stderr line so far. */
  lines: string[];
  /** Resolves with the first line (already seen or future) matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGKILL, and wait for the process to be gone. */
  kill(): Promise<void>;
  /** SIGTERM (graceful), and wait for the exit. */
  stop(): Promise<void>;
}

/** Start `mop serve --host 127.0.0.1 --port 0 --threads 1 <args>`; resolves once it listens. */
export async function startServerProcess(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<ServerProcess> {
  const server = spawnServerProcess(args, env, { timeoutMs });
  const listening = await server.waitForLine(/^listening on http:\/\/127\.0\.0\.1:\d+/);
  const port = /:(\d+) /.exec(listening)![1]!;
  return { ...server, url: `http://127.0.0.1:${port}` };
}

export interface SpawnOptions {
  /** Default wait of waitForLine. */
  timeoutMs?: number;
  /** A command that runs node, e.g. ['unshare', '--pid', '--fork', '--mount-proc'] (PID 1 in a new namespace). */
  wrapper?: string[];
}

/** Start `mop serve` as startServerProcess does, without waiting: `url` is empty until the caller reads the listening line. */
export function spawnServerProcess(args: string[], env: Record<string, string> = {}, options: SpawnOptions = {}): ServerProcess & { exited: Promise<void> } {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const command = [...(options.wrapper ?? []), process.execPath, '--import', 'tsx', path.join(root, 'src/cli/mop.ts'), 'serve', '--host', '127.0.0.1', '--port', '0', '--threads', '1', '--prune-threads', '1', ...args];
  const child = spawn(command[0]!, command.slice(1), {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  let buffered = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      if (process.env.MOP_TEST_LOG) process.stderr.write(`[server ${child.pid}] ${line}\n`);
      for (const w of [...waiters]) {
        if (w.pattern.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitForLine = (pattern: RegExp, ms = timeoutMs): Promise<string> => {
    const seen = lines.find((l) => pattern.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no server line matching ${pattern} within ${ms} ms; lines:\n${lines.join('\n')}`)), ms);
      const gone = () => reject(new Error(`the server exited before a line matching ${pattern}; lines:\n${lines.join('\n')}`));
      void exited.then(gone);
      waiters.push({
        pattern,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  };
  return {
    child,
    url: '',
    exited,
    lines,
    waitForLine,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The model a completion without `model` is answered by. */
export async function defaultModelOf(url: string): Promise<string> {
  const res = await fetch(url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 2, temperature: 0 }) });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return (JSON.parse(text) as { model: string }).model;
}

export async function servedIds(url: string): Promise<string[]> {
  const res = await fetch(url + '/v1/models');
  return ((await res.json()) as { data: { id: string }[] }).data.map((m) => m.id).sort();
}
