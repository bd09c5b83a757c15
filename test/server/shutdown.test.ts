/**
 * Shutdown and start-up under signals, as `mop serve` runs in a container:
 * - SIGTERM during start-up (before the socket listens) stops it at the next step, releases the
 *   engine worker and exits 0 within 5 s, saying so; SIGTERM after listening still drains.
 * - The same as PID 1 of a PID namespace (unshare), where a signal without a handler is dropped.
 * - The drain is bounded: the process exits within the grace period plus a fixed margin, even with
 *   an engine worker that answers nothing (stuck, as in a hung ONNX Runtime call), and every client
 *   gets an answer (a finish_reason or an error event), never a hang.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { injectEngineFault, faultEngineWorker } from '../../scripts/faults/inject.ts';
import { shutdownMarginMs } from '../../src/server/main.ts';
import { postJson, startTestServer, waitFor } from './helpers/server.ts';
import { spawnServerProcess, startServerProcess } from './helpers/server-process.ts';

const STARTUP_EXIT_LINE = /^received SIGTERM during start-up; exiting$/;
/** The promise to an orchestrator: a start-up stopped by SIGTERM is gone within this. */
const STARTUP_EXIT_MS = 5000;
/** Slack for a loaded two-core test machine on top of the promised bounds. */
const SLACK_MS = 3000;

/** Exit code and signal of `child`, and how long after `since` it exited; rejects after `ms`. */
function exitOf(child: ChildProcess, since: number, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; afterMs: number }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode, afterMs: Date.now() - since });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still running ${ms} ms after the signal`)), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, afterMs: Date.now() - since });
    });
  });
}

/** A streaming completion's SSE frames (without `data: `), read to the end or failing after `ms`. */
async function streamFrames(res: Response, ms: number): Promise<string[]> {
  const timer = setTimeout(() => void res.body?.cancel(new Error('hang')), ms);
  try {
    const text = await res.text();
    return text.split('\n\n').filter(Boolean).map((f) => f.replace(/^data: /, ''));
  } finally {
    clearTimeout(timer);
  }
}

/** The stream ended properly: [DONE], after a chunk with a finish_reason or an error event. */
function assertAnswered(frames: string[], what: string): 'finished' | 'error' {
  assert.equal(frames.at(-1), '[DONE]', `${what}: the stream ends with [DONE]: ${frames.slice(-3).join(' | ')}`);
  const body = frames.slice(0, -1).map((f) => JSON.parse(f) as { error?: { code: string }; choices?: { finish_reason: string | null }[] });
  if (body.at(-1)?.error) return 'error';
  assert.ok(body.some((c) => c.choices?.some((x) => x.finish_reason !== null)), `${what}: a finish_reason or an error event`);
  return 'finished';
}

const streamRequest = (url: string) => postJson(url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 400, temperature: 0, ignore_eos: true, stream: true });

describe('SIGTERM during start-up', () => {
  it('before listening: stops start-up, releases the engine and exits 0 within 5 s, saying so', async () => {
    const s = spawnServerProcess([]);
    try {
      // The first line start-up writes: the handlers are installed before it.
      await s.waitForLine(/^mop serve: configuration/);
      const t0 = Date.now();
      s.child.kill('SIGTERM');
      const exit = await exitOf(s.child, t0, STARTUP_EXIT_MS + SLACK_MS);
      assert.equal(exit.code, 0, s.lines.join('\n'));
      assert.ok(exit.afterMs <= STARTUP_EXIT_MS + SLACK_MS, `exited ${exit.afterMs} ms after SIGTERM`);
      assert.ok(s.lines.some((l) => STARTUP_EXIT_LINE.test(l)), s.lines.join('\n'));
      assert.ok(!s.lines.some((l) => /^ready:/.test(l)), 'start-up stopped before the probe');
    } finally {
      await s.kill();
    }
  });

  it('after listening: drains the in-flight stream to its finish_reason and exits 0', async () => {
    const s = await startServerProcess(['--max-batch', '1']);
    try {
      await s.waitForLine(/^ready:/);
      const res = await streamRequest(s.url);
      assert.equal(res.status, 200);
      const t0 = Date.now();
      s.child.kill('SIGTERM');
      const frames = await streamFrames(res, 30_000);
      assert.equal(assertAnswered(frames, 'the stream'), 'finished');
      const exit = await exitOf(s.child, t0, 30_000);
      assert.equal(exit.code, 0, s.lines.join('\n'));
      assert.ok(s.lines.some((l) => /^received SIGTERM$/.test(l)));
      assert.ok(s.lines.some((l) => l === 'shut down'), s.lines.join('\n'));
    } finally {
      await s.kill();
    }
  });
});

/** Why a PID namespace cannot be made here, or undefined when it can. */
function unshareUnavailable(): string | undefined {
  const r = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', '--kill-child', 'true'], { encoding: 'utf8' });
  if (r.error) return `unshare (util-linux) cannot run here: ${r.error.message}`;
  if (r.status !== 0) return `unshare --pid --fork --mount-proc is not permitted here (needs root or user namespaces): ${r.stderr.trim()}`;
  return undefined;
}

/** Host pid of the process unshare forked (PID 1 inside its namespace). */
async function namespaceInit(unsharePid: number): Promise<number> {
  let child: number | undefined;
  await waitFor(() => {
    const children = fs.readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim();
    child = children ? Number(children.split(/\s+/)[0]) : undefined;
    return child !== undefined;
  }, 10_000, 'unshare to fork');
  const nspid = /^NSpid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${child}/status`, 'utf8'))?.[1]?.trim().split(/\s+/);
  assert.equal(nspid?.at(-1), '1', `node is PID 1 in its namespace (NSpid ${nspid?.join(' ')})`);
  return child!;
}

describe('node as PID 1 of a PID namespace (no init in front of it)', () => {
  const skip = unshareUnavailable() ?? false;
  const wrapper = ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child'];

  it('SIGTERM during start-up exits promptly with code 0', { skip }, async () => {
    const s = spawnServerProcess([], {}, { wrapper });
    try {
      await s.waitForLine(/^mop serve: configuration/);
      const init = await namespaceInit(s.child.pid!);
      const t0 = Date.now();
      process.kill(init, 'SIGTERM');
      const exit = await exitOf(s.child, t0, STARTUP_EXIT_MS + SLACK_MS);
      assert.equal(exit.code, 0, s.lines.join('\n'));
      assert.ok(s.lines.some((l) => STARTUP_EXIT_LINE.test(l)), s.lines.join('\n'));
    } finally {
      await s.kill();
    }
  });

  it('SIGTERM after listening drains and exits 0', { skip }, async () => {
    const s = spawnServerProcess([], {}, { wrapper });
    try {
      await s.waitForLine(/^ready:/);
      const init = await namespaceInit(s.child.pid!);
      const t0 = Date.now();
      process.kill(init, 'SIGTERM');
      const exit = await exitOf(s.child, t0, 30_000);
      assert.equal(exit.code, 0, s.lines.join('\n'));
      assert.ok(s.lines.some((l) => l === 'shut down'), s.lines.join('\n'));
    } finally {
      await s.kill();
    }
  });
});

describe('a bounded drain', () => {
  const graceMs = 300;

  it('mop serve exits within the grace period plus the margin, and every stream gets its end', async () => {
    const s = await startServerProcess(['--max-batch', '1', '--shutdown-grace-ms', String(graceMs)]);
    try {
      await s.waitForLine(/^ready:/);
      // One slot: the first stream runs, the others wait behind it, past the grace period.
      const responses = await Promise.all(Array.from({ length: 6 }, () => streamRequest(s.url)));
      const t0 = Date.now();
      s.child.kill('SIGTERM');
      const ends = await Promise.all(responses.map(async (res, i) => (res.status === 200 ? assertAnswered(await streamFrames(res, graceMs + shutdownMarginMs + SLACK_MS), `stream ${i}`) : res.status)));
      const exit = await exitOf(s.child, t0, graceMs + shutdownMarginMs + SLACK_MS);
      assert.equal(exit.code, 0, s.lines.join('\n'));
      assert.ok(ends.every((e) => e === 'finished' || e === 'error' || e === 503), JSON.stringify(ends));
    } finally {
      await s.kill();
    }
  });

  it('close() gives up on an engine that answers nothing after the bound, and its streams end with an error event', async () => {
    const s = await startTestServer({ maxBatch: 1, shutdownGraceMs: graceMs }, { engineWorker: faultEngineWorker });
    const responses = await Promise.all(Array.from({ length: 4 }, () => streamRequest(s.url)));
    await waitFor(() => s.service.active!.scheduler.stats().running === 1, 5000, 'a stream to hold the slot');
    // Blocks the worker thread as a hung native call would: no step ends, no message is read.
    injectEngineFault({ variant: s.service.active!.id, action: 'stall', ms: 20_000 });
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    const closed = await Promise.race([s.close().then(() => 'closed'), new Promise((r) => setTimeout(() => r('hung'), graceMs + shutdownMarginMs + SLACK_MS).unref())]);
    const afterMs = Date.now() - t0;
    assert.equal(closed, 'closed', `close() still waiting ${afterMs} ms later on an engine that answers nothing`);
    assert.ok(afterMs <= graceMs + shutdownMarginMs + SLACK_MS, `close() took ${afterMs} ms`);
    const ends = await Promise.all(responses.map(async (res, i) => (res.status === 200 ? assertAnswered(await streamFrames(res, 2000), `stream ${i}`) : res.status)));
    assert.ok(ends.includes('error'), `the streams the stuck engine held end with an error event: ${JSON.stringify(ends)}`);
  });
});
