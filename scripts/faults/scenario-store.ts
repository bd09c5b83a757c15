/**
 * The model store stops taking writes after start (a volume remounted read-only, as a full or
 * failing disk does): admin changes that write the manifest (split, activation) and a prune whose
 * export must be written. Each must be answered, with the cause where it is an error; serving and
 * /ready go on. The store sits on its own tmpfs, remounted read-only after the server follows it;
 * where mounting is not permitted, the store's tmp/ directory is replaced by a file instead (every
 * write goes through tmp/ first), and the report says which.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { neverAnswered, type Outcome, send } from './client.ts';
import { ClosedLoop } from './closed-loop.ts';
import { adminRequest, type FaultSettings, QUICK_PRUNE, type ScenarioDef, sleep, streamRequest } from './harness.ts';
import { tally } from './report.ts';
import { pruneJob } from './scenario-unload.ts';

const mountPoint = (s: FaultSettings) => path.join(s.outDir, `ro-store-${process.pid}`);
const storeDir = (s: FaultSettings) => path.join(mountPoint(s), 'store');
let mounted = false;

export const manifestWriteFailureScenario: ScenarioDef = {
  id: 'manifest-write-failure',
  title: 'Model store write failure',
  procedure: (s) =>
    `\`--model-store\` on a 64 MiB tmpfs, remounted read-only once the server follows the store (where mounting is not permitted: its tmp/ directory replaced by a file). Then, with 2 bystanders streaming: \`PUT /admin/split\` (${s.modelId}, share 0.5), \`DELETE /admin/split\`, \`POST /admin/models/${s.modelId}/activate\` (each writes the manifest), and a prune (\`${JSON.stringify(QUICK_PRUNE)}\`) whose export cannot be written, followed up to ${s.pruneWaitMs / 1000} s.`,
  entry: 'mop serve',
  serverArgs: (s) => ['--model-store', storeDir(s)],
  prepare: async (s) => {
    fs.mkdirSync(mountPoint(s), { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=65536k', 'tmpfs', mountPoint(s)], { stdio: 'ignore' });
      mounted = true;
    } catch {
      mounted = false;
    }
  },
  body: async (server, s, record) => {
    if ((await server.waitForLine(/^model store: following /, s.startWaitMs)) === undefined) throw new Error(`the server never said it follows the store:\n${server.lines.slice(-10).join('\n')}`);
    if (mounted) execFileSync('mount', ['-o', 'remount,ro', mountPoint(s)]);
    else {
      fs.rmSync(path.join(storeDir(s), 'tmp'), { recursive: true, force: true });
      fs.writeFileSync(path.join(storeDir(s), 'tmp'), 'not a directory: bench:faults makes every store write fail here\n');
    }
    record.notes.push(`(bench) store made unwritable by ${mounted ? 'remounting its tmpfs read-only (EROFS)' : 'replacing its tmp/ directory by a file (ENOTDIR; mounting is not permitted here)'}`);
    const bystanders = new ClosedLoop(server.url, { concurrency: 2, maxRequests: 10_000, maxMs: 10 * 60_000, request: (i) => streamRequest(s, i) });
    try {
      await sleep(s.warmMs);
      const calls: [string, Outcome][] = [];
      for (const [label, method, p, body] of [
        ['PUT /admin/split', 'PUT', '/split', { variant: s.modelId, share: 0.5 }],
        ['DELETE /admin/split', 'DELETE', '/split', {}],
        [`POST /admin/models/${s.modelId}/activate`, 'POST', `/models/${encodeURIComponent(s.modelId)}/activate`, {}],
      ] as const) {
        calls.push([label, await send(server.url, adminRequest(s, method, p, body))]);
      }
      const prune = await pruneJob(server, s, { ...QUICK_PRUNE, id: 'unwritable', activate: false });
      const ready = await send(server.url, { path: '/ready', method: 'GET', body: {}, statusWaitMs: s.statusWaitMs, endWaitMs: s.statusWaitMs });
      const load = await bystanders.stop();
      for (const [label, o] of calls) record.rows.push(tally(label, [o]));
      record.rows.push(tally('POST /admin/prune', [prune.accepted]), tally('bystander streams (2 at a time)', load));
      for (const [label, o] of calls) record.notes.push(`(bench) ${label}: ${o.status || o.end}${o.text && o.status >= 400 ? ' ' + o.text.slice(0, 240) : ''}`);
      record.notes.push(`(bench) prune: ${prune.accepted.status || prune.accepted.end}; job ${prune.job?.status ?? 'not started'}${prune.job?.error ? ': ' + prune.job.error.slice(0, 240) : ''} (${prune.seconds.toFixed(1)} s)`);
      const explained = (o: Outcome) => o.status > 0 && (o.status < 400 || /read-only|EROFS|ENOTDIR|store|manifest/i.test(o.text ?? ''));
      const jobEnded = prune.accepted.status !== 202 || (prune.job !== null && prune.job.status !== 'running');
      record.checks.push(
        { what: 'every manifest-writing admin call is answered, an error naming the store or its cause', ok: calls.every(([, o]) => explained(o)), seen: calls.map(([l, o]) => `${l.split(' ')[0]} ${l.split(' ')[1]!.replace('/admin', '')}: ${o.status || o.end}${o.code ? ' ' + o.code : ''}`).join('; ') },
        { what: 'the prune is refused or its job fails with the cause (not left running)', ok: jobEnded && (prune.accepted.status !== 202 || prune.job?.status === 'failed'), seen: `${prune.accepted.status || prune.accepted.end}; job ${prune.job?.status ?? '–'}` },
        { what: '/ready stays 200', ok: ready.status === 200, seen: `${ready.status || ready.end}` },
        { what: 'bystanders served throughout', ok: load.every((o) => o.end === 'finish'), seen: `${load.filter((o) => o.end === 'finish').length} of ${load.length} finished; ${load.filter(neverAnswered).length} never answered` },
      );
    } finally {
      await bystanders.stop();
    }
  },
  cleanup: async (s) => {
    if (mounted) {
      execFileSync('umount', ['-l', mountPoint(s)], { stdio: 'ignore' });
      mounted = false;
    }
    fs.rmSync(mountPoint(s), { recursive: true, force: true });
  },
};
