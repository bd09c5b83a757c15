/**
 * The model store's faults, with real `mop serve` processes on one store directory: SIGKILL
 * during a prune, during the export and during a manifest update; damaged entries; a newer
 * release's manifest; a full or read-only store; two processes following one store.
 * Each restart must serve the last completed active variant, and nothing half-written may ever
 * appear as a variant.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { watch } from 'node:fs';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultModelOf, type ServerProcess, servedIds, startServerProcess } from './helpers/server-process.ts';
import { okJson } from './helpers/server.ts';

const TOKEN = 'fault-admin-token-0123';
const POLL_MS = 300;
// Small calibration and no recovery fine-tuning (on by default): prunes of seconds, not minutes.
const quick = { samples: 8, seq_len: 64, recovery: 'none' };

const admin = (url: string, method: string, p: string, body?: unknown, signal?: AbortSignal) =>
  fetch(url + '/admin' + p, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, ...(body !== undefined && { body: JSON.stringify(body) }), ...(signal && { signal }) });

const json = okJson;

interface Job {
  id: string;
  status: string;
  variant: string | null;
  storeKey: string | null;
  error: string | null;
  progress: unknown;
}

async function waitForJob(url: string, id: string, until: (j: Job) => boolean, timeoutMs = 120_000): Promise<Job> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const job = await json<Job>(admin(url, 'GET', `/prune/${id}`));
    if (until(job)) return job;
    if (Date.now() > end) throw new Error(`job ${id}: ${JSON.stringify(job)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Start a server on `dir` and wait until it has restored from the store and follows it. */
async function serve(dir: string, extra: string[] = []): Promise<ServerProcess> {
  const s = await startServerProcess(['--admin-token', TOKEN, '--max-batch', '2', '--model-store', dir, '--model-store-poll-ms', String(POLL_MS), ...extra]);
  await s.waitForLine(/^model store: following /);
  return s;
}

const names = async (dir: string) => (await fs.readdir(dir).catch(() => [] as string[])).sort();
const readManifest = async (dir: string) => JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8')) as { active: string | null; variants: { id: string; key: string }[] };

/**
 * Freeze `s` (SIGSTOP) the moment a file whose name starts with `prefix` appears in `dir`, then
 * SIGKILL it. Resolves with what `dir` held while the process was frozen.
 */
function killWhenCreated(s: ServerProcess, dir: string, prefix: string, trigger: () => void): Promise<string[]> {
  return new Promise((resolve, reject) => {
    let fired = false;
    const watcher = watch(dir, (_event, name) => {
      if (fired || !name?.startsWith(prefix)) return;
      fired = true;
      s.child.kill('SIGSTOP');
      watcher.close();
      void names(dir).then(async (frozen) => {
        await s.kill();
        resolve(frozen);
      }, reject);
    });
    trigger();
    setTimeout(() => {
      if (fired) return;
      watcher.close();
      reject(new Error(`nothing named ${prefix}* appeared in ${dir}`));
    }, 120_000).unref();
  });
}

describe('SIGKILL at the worst moments, then a restart on the same store', () => {
  let dir: string;
  let s: ServerProcess | undefined;
  let completedKey: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-store-faults-'));
  });
  after(async () => {
    await s?.kill();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('during a prune: the restarted server serves the last completed active variant; nothing of the killed job is left', async () => {
    s = await serve(dir);
    const done = await json<Job>(admin(s.url, 'POST', '/prune', { target: 0.3, id: 'mop-30', ...quick }));
    const finished = await waitForJob(s.url, done.id, (j) => j.status !== 'running');
    assert.equal(finished.status, 'succeeded', finished.error ?? '');
    completedKey = finished.storeKey!;
    const running = await json<Job>(admin(s.url, 'POST', '/prune', { target: 0.5, id: 'mop-50', ...quick }));
    await waitForJob(s.url, running.id, (j) => j.progress !== null);
    await s.kill();

    s = await serve(dir);
    assert.deepEqual(await servedIds(s.url), ['mop-30', 'stories260K']);
    assert.equal(await defaultModelOf(s.url), 'mop-30');
    assert.deepEqual(await names(path.join(dir, 'entries')), [completedKey]);
    assert.deepEqual(await names(path.join(dir, 'tmp')), []);
  });

  it('during the export into the store: the half-written entry is never a variant, and is cleaned up', async () => {
    const started = await json<Job>(admin(s!.url, 'POST', '/prune', { target: 0.5, id: 'mop-50', ...quick }));
    const key = started.storeKey!;
    const frozen = await killWhenCreated(s!, path.join(dir, 'tmp'), key, () => undefined);
    assert.ok(frozen.some((n) => n.startsWith(key)), `the export's scratch was there when the server froze: ${frozen}`);
    const published = (await names(path.join(dir, 'entries'))).includes(key);

    s = await serve(dir);
    assert.deepEqual(await servedIds(s.url), ['mop-30', 'stories260K'], 'the killed export is not served');
    assert.equal(await defaultModelOf(s.url), 'mop-30');
    assert.deepEqual(await names(path.join(dir, 'tmp')), [], 'the scratch was removed on start');
    const entries = await names(path.join(dir, 'entries'));
    // Killed before the publishing rename: no entry; after it (the export had finished): a whole one.
    assert.deepEqual(entries, published ? [completedKey, key].sort() : [completedKey]);
  });

  it('during a manifest update: the restarted server serves what the manifest on disk says (old or new, never a mix)', async () => {
    const ac = new AbortController();
    const frozen = await killWhenCreated(s!, path.join(dir, 'tmp'), 'manifest.', () => {
      admin(s!.url, 'POST', '/models/stories260K/activate', undefined, ac.signal).catch(() => undefined);
    });
    ac.abort();
    assert.ok(frozen.some((n) => n.startsWith('manifest.')), `${frozen}`);
    const manifest = await readManifest(dir);
    assert.ok(manifest.active === 'mop-30' || manifest.active === 'stories260K', JSON.stringify(manifest));

    s = await serve(dir);
    assert.equal(await defaultModelOf(s.url), manifest.active);
    assert.deepEqual(await names(path.join(dir, 'tmp')), []);
    await json(admin(s.url, 'POST', '/models/mop-30/activate'));
  });

  it('a truncated safetensors file: one log line naming it, the entry skipped, the dense model served, /ready 200', async () => {
    await s!.stop();
    const weights = path.join(dir, 'entries', completedKey, 'model.safetensors');
    const st = await fs.stat(weights);
    await fs.truncate(weights, Math.floor(st.size / 2));

    s = await serve(dir);
    const complaints = s.lines.filter((l) => l.includes('model.safetensors'));
    assert.equal(complaints.length, 1, complaints.join('\n'));
    assert.match(complaints[0]!, /skipping variant 'mop-30'.*model\.safetensors/);
    assert.deepEqual(await servedIds(s.url), ['stories260K']);
    assert.equal(await defaultModelOf(s.url), 'stories260K');
    assert.equal((await fetch(s.url + '/ready')).status, 200);
  });

  it('a config.json that is not JSON (same size): one log line naming the entry, dense served, /ready 200', async () => {
    await s!.stop();
    // Re-create the entry whole (a prune with the same recipe rewrites a damaged entry), then damage its config.
    s = await serve(dir);
    const redo = await json<Job>(admin(s.url, 'POST', '/prune', { target: 0.3, id: 'mop-30', ...quick }));
    assert.equal((await waitForJob(s.url, redo.id, (j) => j.status !== 'running')).status, 'succeeded');
    await s.stop();
    const config = path.join(dir, 'entries', completedKey, 'config.json');
    const size = (await fs.stat(config)).size;
    await fs.writeFile(config, '#'.repeat(size));

    s = await serve(dir);
    const complaints = s.lines.filter((l) => l.includes(completedKey) && /skipping/.test(l));
    assert.equal(complaints.length, 1, s.lines.join('\n'));
    assert.match(complaints[0]!, /config\.json|JSON/);
    assert.deepEqual(await servedIds(s.url), ['stories260K']);
    assert.equal((await fetch(s.url + '/ready')).status, 200);
  });
});

describe('a store whose manifest a newer release wrote', () => {
  let dir: string;
  let s: ServerProcess | undefined;
  after(async () => {
    await s?.kill();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('is reported in one clear line, the dense model serves, and nothing in the store is overwritten', async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-store-newer-'));
    const newer = JSON.stringify({ version: 99, variants: [], active: 'x', split: null, updatedAt: '2030-01-01T00:00:00Z', writer: 'future' }) + '\n';
    await fs.writeFile(path.join(dir, 'manifest.json'), newer);
    s = await serve(dir);
    assert.ok(s.lines.some((l) => /manifest version 99, this mop-serve understands version 1 only/.test(l)), s.lines.join('\n'));
    assert.equal(await defaultModelOf(s.url), 'stories260K');
    assert.equal((await fetch(s.url + '/ready')).status, 200);
    await json(admin(s.url, 'POST', '/models/stories260K/activate'));
    const job = await json<Job>(admin(s.url, 'POST', '/prune', { target: 0.3, ...quick }));
    const failed = await waitForJob(s.url, job.id, (j) => j.status !== 'running');
    assert.equal(failed.status, 'failed');
    assert.match(failed.error!, /manifest version 99/);
    assert.equal(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8'), newer, 'the manifest is untouched');
    assert.deepEqual(await names(path.join(dir, 'entries')), []);
    assert.equal(await defaultModelOf(s.url), 'stories260K');
  });
});

/** A small tmpfs at a fresh mount point (root only); undefined where mounting is not allowed. */
function mountTmpfs(sizeKiB: number): string | undefined {
  const mnt = execFileSync('mktemp', ['-d', path.join(os.tmpdir(), 'mop-store-mnt-XXXXXX')], { encoding: 'utf8' }).trim();
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k`, 'tmpfs', mnt], { stdio: 'ignore' });
    return mnt;
  } catch {
    execFileSync('rmdir', [mnt]);
    return undefined;
  }
}

function unmount(mnt: string): void {
  try {
    execFileSync('umount', [mnt], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

describe('a store that cannot take the export', () => {
  const mounts: string[] = [];
  let s: ServerProcess | undefined;
  after(async () => {
    await s?.kill();
    for (const m of mounts) {
      unmount(m);
      await fs.rmdir(m).catch(() => undefined);
    }
  });

  for (const fault of ['full', 'read-only'] as const) {
    it(`(${fault} filesystem) fails the prune job with the reason while serving goes on`, async (t) => {
      // A real filesystem that runs out of space or refuses writes: a tmpfs (mounting needs root).
      const mnt = mountTmpfs(fault === 'full' ? 300 : 1024);
      if (!mnt) return t.skip('mounting a tmpfs is not permitted here');
      mounts.push(mnt);
      if (fault === 'read-only') {
        await fs.mkdir(path.join(mnt, 'store', 'entries'), { recursive: true });
        for (const d of ['tmp', 'trash']) await fs.mkdir(path.join(mnt, 'store', d));
        execFileSync('mount', ['-o', 'remount,ro', mnt]);
      }
      await s?.kill();
      s = await serve(path.join(mnt, 'store'));
      const job = await json<Job>(admin(s.url, 'POST', '/prune', { target: 0.3, ...quick }));
      const failed = await waitForJob(s.url, job.id, (j) => j.status !== 'running');
      assert.equal(failed.status, 'failed');
      assert.match(failed.error!, fault === 'full' ? /no space left on device \(ENOSPC\)/ : /read-only file system \(EROFS\)/);
      assert.deepEqual(await servedIds(s.url), ['stories260K']);
      assert.equal(await defaultModelOf(s.url), 'stories260K');
      assert.equal((await fetch(s.url + '/ready')).status, 200);
      assert.deepEqual(await names(path.join(mnt, 'store', 'entries')), []);
    });
  }
});

describe('two server processes on one store', () => {
  let dir: string;
  let a: ServerProcess | undefined;
  let b: ServerProcess | undefined;
  after(async () => {
    await a?.kill();
    await b?.kill();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('an activation on one reaches the other within the poll interval; both answer with the same variant', async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-store-two-'));
    [a, b] = await Promise.all([serve(dir), serve(dir)]);
    const job = await json<Job>(admin(a.url, 'POST', '/prune', { target: 0.3, id: 'mop-30', ...quick }));
    assert.equal((await waitForJob(a.url, job.id, (j) => j.status !== 'running')).status, 'succeeded');
    // b loads the new variant from the store (no prune of its own) and activates it.
    await b.waitForLine(/model store: loaded variant 'mop-30' .* \(follow\)/, 60_000);
    const seen = async (url: string, model: string, limitMs: number) => {
      const t0 = Date.now();
      while ((await defaultModelOf(url)) !== model) {
        assert.ok(Date.now() - t0 < limitMs, `${url} still not answering with ${model} after ${limitMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return Date.now() - t0;
    };
    await seen(b.url, 'mop-30', 10_000);
    assert.equal((await json<{ data: Job[] }>(admin(b.url, 'GET', '/prune'))).data.length, 0, 'b pruned nothing');

    // An activation of an already loaded variant: within the poll interval (plus scheduling slack).
    await json(admin(b.url, 'POST', '/models/stories260K/activate'));
    const delay = await seen(a.url, 'stories260K', POLL_MS + 2000);
    assert.ok(delay <= POLL_MS + 2000, `reached the other server after ${delay} ms`);
    assert.equal(await defaultModelOf(a.url), await defaultModelOf(b.url));
  });
});
