/**
 * A server under a fault scenario as a child process: `mop serve` from the sources, or
 * fault-server.ts (the same server with engine workers whose faults the parent switches on over
 * IPC). A child keeps the server's memory apart from the benchmark's (RSS is the server's own), its
 * event loop apart from the load generator's, and a server that dies or hangs apart from the
 * benchmark. Always 127.0.0.1, port 0 (the server prints the port it got). Every wait is bounded.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EngineFault } from './fault-engine-worker.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Which program the child runs. */
export type ServerEntry = 'mop serve' | 'fault server';

export interface ServerChildOptions {
  entry: ServerEntry;
  /** `mop serve` flags (host, port and the thread flags are set here). */
  args: string[];
  env?: Record<string, string>;
  /** Every line the server writes goes here too (a file under bench-out/). */
  logFile: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when it exited. */
  atMs: number;
}

export class ServerChild {
  readonly child: ChildProcess;
  /** Every line the server wrote to stdout or stderr so far. */
  readonly lines: string[] = [];
  url = '';
  exit: ExitInfo | undefined;
  readonly exited: Promise<ExitInfo>;
  private buffered = '';
  private readonly waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  private readonly out: fs.WriteStream;

  constructor(readonly options: ServerChildOptions) {
    const program = options.entry === 'mop serve' ? [path.join(repoRoot, 'src/cli/mop.ts'), 'serve'] : [path.join(repoRoot, 'scripts/faults/fault-server.ts')];
    const args = ['--import', 'tsx', ...program, '--host', '127.0.0.1', '--port', '0', '--threads', '1', '--prune-threads', '1', ...options.args];
    this.out = fs.createWriteStream(options.logFile);
    this.child = spawn(process.execPath, args, {
      cwd: repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe', ...(options.entry === 'fault server' ? (['ipc'] as const) : [])],
    });
    const onData = (d: Buffer) => {
      this.out.write(d);
      this.buffered += d.toString();
      let nl;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        this.lines.push(line);
        for (const w of [...this.waiters]) {
          if (!w.pattern.test(line)) continue;
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal, atMs: performance.now() };
        this.out.end();
        resolve(this.exit);
      }),
    );
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** The first line (already written or to come) matching `pattern`; undefined after `ms` or when the process is gone. */
  async waitForLine(pattern: RegExp, ms: number): Promise<string | undefined> {
    const seen = this.lines.find((l) => pattern.test(l));
    if (seen !== undefined || this.exit) return seen;
    let timer: NodeJS.Timeout | undefined;
    let waiter: { pattern: RegExp; resolve: (line: string) => void } | undefined;
    const line = new Promise<string>((resolve) => {
      waiter = { pattern, resolve };
      this.waiters.push(waiter);
    });
    const result = await Promise.race([line, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms))), this.exited.then(() => undefined)]);
    clearTimeout(timer);
    if (waiter && this.waiters.includes(waiter)) this.waiters.splice(this.waiters.indexOf(waiter), 1);
    return result;
  }

  /** Wait until the server listens and /ready answers 200; throws (after stopping it) if that takes over `ms`. */
  async ready(ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    const listening = await this.waitForLine(/listening on http:\/\/127\.0\.0\.1:\d+/, ms);
    if (!listening) {
      await this.stop(5000);
      throw new Error(`the server did not listen within ${ms / 1000} s (${this.exit ? `exited ${this.exit.code ?? this.exit.signal}` : 'still running'}):\n${this.lines.slice(-15).join('\n')}`);
    }
    this.url = `http://127.0.0.1:${/:(\d+)/.exec(listening.slice(listening.indexOf('http://')))![1]}`;
    while (performance.now() < deadline && !this.exit) {
      const ok = await fetch(this.url + '/ready', { signal: AbortSignal.timeout(2000) }).then((r) => r.status === 200, () => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.stop(5000);
    throw new Error(`the server was not ready within ${ms / 1000} s:\n${this.lines.slice(-15).join('\n')}`);
  }

  /** Resident set size of the server process (engine threads included), from /proc; null where unreadable. */
  rssBytes(): number | null {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : null;
    } catch {
      return null;
    }
  }

  /** Switch a fault on in the fault server's engine workers (see fault-engine-worker.ts). */
  injectEngineFault(fault: EngineFault): void {
    if (this.options.entry !== 'fault server') throw new Error('engine faults need the fault server entry');
    this.child.send({ type: 'engine-fault', fault });
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.exit) this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Resolves with how it ended and whether it had to be killed. */
  async stop(graceMs: number): Promise<{ exit: ExitInfo; killed: boolean }> {
    if (this.exit) return { exit: this.exit, killed: false };
    this.signal('SIGTERM');
    return this.waitExit(graceMs);
  }

  /** Wait up to `ms` for the exit; SIGKILL past it (the process never outlives the benchmark). */
  async waitExit(ms: number): Promise<{ exit: ExitInfo; killed: boolean }> {
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([this.exited.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)))]);
    clearTimeout(timer);
    if (inTime) return { exit: this.exit!, killed: false };
    this.child.kill('SIGKILL');
    return { exit: await this.exited, killed: true };
  }
}
