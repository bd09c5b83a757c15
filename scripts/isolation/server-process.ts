/**
 * The server under test as a child process (`node bin/mop.js serve`), so the benchmark's own load
 * generator and probes never share its event loop. Bound to 127.0.0.1 on a port the server picks (port 0) and prints.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** Everything the server wrote to stdout and stderr so far. */
  log: () => string;
  stop: () => Promise<void>;
}

export async function startServerProcess(o: { repoRoot: string; args: string[]; env: Record<string, string>; logFile: string; readyTimeoutMs: number }): Promise<ServerProcess> {
  // Port 0: the server binds a free port itself and prints it. Picking one here and passing it on
  // races with anything else on the machine that binds ports meanwhile (seen: another process took
  // it, and the probes measured that process).
  const child = spawn(process.execPath, [path.join(o.repoRoot, 'bin/mop.js'), 'serve', '--host', '127.0.0.1', '--port', '0', ...o.args], {
    cwd: o.repoRoot,
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  const out = fs.createWriteStream(o.logFile);
  const onData = (d: Buffer) => {
    text += d.toString();
    out.write(d);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(killer);
    }
    out.end();
  };
  const deadline = performance.now() + o.readyTimeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}) before it was ready:\n${text.slice(-2000)}`);
    if (performance.now() > deadline) {
      await stop();
      throw new Error(`the server was not ready within ${o.readyTimeoutMs / 1000} s:\n${text.slice(-2000)}`);
    }
    const listening = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(text);
    const url = listening ? `http://127.0.0.1:${listening[1]}` : undefined;
    const ok = url !== undefined && (await fetch(url + '/ready').then((r) => r.status === 200, () => false));
    if (ok) return { url, child, log: () => text, stop };
    await new Promise((r) => setTimeout(r, 250));
  }
}
