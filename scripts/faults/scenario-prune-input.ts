/**
 * Prune requests that name calibration files the server cannot or must not read — a device that
 * never ends, a FIFO nobody writes, a missing file, a directory, files outside --data-dir — each
 * must be answered at once (refused, or a job that fails) without leaving a job running or the
 * server's memory grown, and a normal prune right after must still be accepted. Streams run
 * meanwhile and must be served.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { neverAnswered, type Outcome, send } from './client.ts';
import { ClosedLoop } from './closed-loop.ts';
import { adminRequest, type FaultSettings, mibOf, QUICK_PRUNE, type ScenarioDef, sleep, streamRequest } from './harness.ts';
import { tally } from './report.ts';
import type { ServerChild } from './server-child.ts';

/** The scenario's --data-dir: a good calibration file, a FIFO, a character device (where mknod works), a subdirectory. */
function dataDir(s: FaultSettings): string {
  return path.join(s.outDir, `data-${process.pid}`);
}

function prepareDataDir(s: FaultSettings): void {
  const dir = dataDir(s);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, 'subdir'), { recursive: true });
  fs.copyFileSync(fileURLToPath(new URL('../../data/tinystories-calibration.txt', import.meta.url)), path.join(dir, 'good.txt'));
  execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  try {
    // A device inside the data directory: reading it never ends (creating one needs root).
    execFileSync('mknod', [path.join(dir, 'zero'), 'c', '1', '5'], { stdio: 'ignore' });
  } catch {
    // not permitted here: the FIFO and /dev/zero still cover blocking and unbounded reads
  }
}

function badPaths(s: FaultSettings): { label: string; path: string }[] {
  const dir = dataDir(s);
  return [
    { label: '/dev/zero (a device outside --data-dir)', path: '/dev/zero' },
    ...(fs.existsSync(path.join(dir, 'zero')) ? [{ label: 'a zero device (mknod c 1 5) in --data-dir', path: path.join(dir, 'zero') }] : []),
    { label: 'a FIFO in --data-dir that nobody writes', path: path.join(dir, 'fifo') },
    { label: 'a missing file in --data-dir', path: path.join(dir, 'missing.txt') },
    { label: 'a directory in --data-dir', path: path.join(dir, 'subdir') },
    { label: 'a readable file outside --data-dir', path: '/etc/hostname' },
    { label: '../ out of --data-dir (relative)', path: '../../../etc/hostname' },
  ];
}

/** A reader blocked opening the FIFO gets a writer that closes at once (end of file), so the server can shut down. */
function releaseFifo(s: FaultSettings): void {
  const fifo = path.join(dataDir(s), 'fifo');
  try {
    const fd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    fs.closeSync(fd);
  } catch {
    // gone already
  }
}

async function jobStatus(server: ServerChild, s: FaultSettings, id: string, waitMs: number): Promise<string> {
  const until = performance.now() + waitMs;
  let status = 'unknown';
  while (performance.now() < until) {
    const got = await send(server.url, adminRequest(s, 'GET', `/prune/${id}`));
    status = got.status === 200 ? ((JSON.parse(got.text ?? '{}') as { status?: string }).status ?? 'unknown') : `HTTP ${got.status || got.end}`;
    if (status !== 'running') return status;
    await sleep(250);
  }
  return status;
}

export const badCalibrationScenario: ScenarioDef = {
  id: 'bad-calibration',
  title: 'Prune with an unreadable calibration path',
  procedure: (s) =>
    `With \`--data-dir\` set to a scratch directory, \`POST /admin/prune\` (\`${JSON.stringify(QUICK_PRUNE)}\`, not activated) naming as \`calibration\`: /dev/zero, a zero device made in the data directory (mknod, where permitted), a FIFO nobody writes, a missing file, a directory, files outside the data directory (absolute and ../). A 202 is followed up to ${s.statusWaitMs / 1000} s for the job's end. Then a normal prune (the data directory's good calibration file) must be accepted, and is cancelled. Two bystanders stream meanwhile.`,
  entry: 'mop serve',
  expectsInvalid: true,
  serverArgs: (s) => ['--data-dir', dataDir(s)],
  prepare: async (s) => prepareDataDir(s),
  body: async (server, s, record) => {
    const bad = badPaths(s);
    const bystanders = new ClosedLoop(server.url, { concurrency: 2, maxRequests: 10_000, maxMs: 10 * 60_000, request: (i) => streamRequest(s, i) });
    const rssBefore = mibOf(server.rssBytes());
    const answers: Outcome[] = [];
    const seen: string[] = [];
    let jobsLeft = 0;
    try {
      for (const [i, b] of bad.entries()) {
        const got = await send(server.url, adminRequest(s, 'POST', '/prune', { ...QUICK_PRUNE, calibration: b.path, id: `bad-${i}`, activate: false }));
        answers.push(got);
        let what = `${got.status || got.end}${got.code ? ' ' + got.code : ''} in ${Math.round(got.ms)} ms`;
        if (got.status === 202) {
          const id = (JSON.parse(got.text ?? '{}') as { id: string }).id;
          const status = await jobStatus(server, s, id, s.statusWaitMs);
          if (status === 'running') {
            jobsLeft++;
            await send(server.url, adminRequest(s, 'DELETE', `/prune/${id}`));
          }
          what += `, job ${status}`;
        }
        seen.push(`${b.label}: ${what}`);
        s.log(`bad-calibration: ${b.label}: ${what}`);
      }
      const rssAfterBad = mibOf(server.rssBytes());
      const good = await send(server.url, adminRequest(s, 'POST', '/prune', { ...QUICK_PRUNE, calibration: path.join(dataDir(s), 'good.txt'), id: 'after-bad', activate: false }));
      let cancel: Outcome | undefined;
      if (good.status === 202) cancel = await send(server.url, adminRequest(s, 'DELETE', `/prune/${(JSON.parse(good.text ?? '{}') as { id: string }).id}`));
      const load = await bystanders.stop();
      record.rows.push(tally('prunes naming a bad calibration path', answers), tally('the normal prune after them', [good]), ...(cancel ? [tally('its cancellation', [cancel])] : []), tally('bystander streams (2 at a time)', load));
      record.notes.push(...seen.map((l) => `(bench) ${l}`), `(bench) normal prune: ${good.status || good.end}${good.code ? ' ' + good.code : ''}${good.status !== 202 && good.text ? ': ' + good.text.slice(0, 200) : ''}`);
      const refused = answers.filter((a) => a.status >= 400 && a.status < 500).length;
      const growth = rssBefore !== null && rssAfterBad !== null ? rssAfterBad - rssBefore : null;
      record.checks.push(
        { what: 'each bad path is answered within the wait (refused 4xx, or a job that ends)', ok: answers.every((a) => a.status !== 0) && jobsLeft === 0, seen: `${refused} of ${answers.length} refused 4xx; ${jobsLeft} job(s) still running after ${s.statusWaitMs / 1000} s; ${answers.filter((a) => a.status === 0).length} without a status` },
        { what: 'a normal prune after them is accepted (202)', ok: good.status === 202, seen: `${good.status || good.end}${good.code ? ' ' + good.code : ''}` },
        { what: 'server memory did not grow by more than 256 MiB', ok: growth !== null && growth < 256, seen: growth === null ? 'unreadable' : `${growth >= 0 ? '+' : ''}${growth.toFixed(0)} MiB` },
        { what: 'bystanders served throughout', ok: load.every((o) => o.end === 'finish'), seen: `${load.filter((o) => o.end === 'finish').length} of ${load.length} finished; ${load.filter(neverAnswered).length} never answered` },
      );
    } finally {
      await bystanders.stop();
      releaseFifo(s);
    }
  },
  cleanup: async (s) => {
    releaseFifo(s);
    fs.rmSync(dataDir(s), { recursive: true, force: true });
  },
};
