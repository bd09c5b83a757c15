/**
 * POST /admin/prune against hostile input, over real HTTP: files only from the data directory
 * (and no hint about any other path), no file that would block a reader, no id that shadows the
 * "default" alias, and a job history that stays bounded.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, startTestServer } from './helpers/server.ts';

const TOKEN = 'test-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const quick = { samples: 8, seq_len: 64, recovery: 'none' };

function admin(s: RunningServer, method: string, p: string, body?: unknown): Promise<Response> {
  return fetch(s.url + p, { method, headers: { 'content-type': 'application/json', ...auth }, ...(body !== undefined && { body: JSON.stringify(body) }) });
}

/** Start a prune and cancel it: proves it was accepted, without pruning. */
async function startAndCancel(s: RunningServer, body: Record<string, unknown>): Promise<string> {
  const res = await admin(s, 'POST', '/admin/prune', { target: 0.3, activate: false, ...quick, ...body });
  const text = await res.text();
  assert.equal(res.status, 202, text);
  const { id } = JSON.parse(text) as { id: string };
  const cancelled = await admin(s, 'DELETE', `/admin/prune/${id}`);
  assert.equal(cancelled.status, 200);
  return id;
}

describe('POST /admin/prune: files only from the data directory', () => {
  let s: RunningServer;
  let root: string;
  let dataDir: string;
  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-data-dir-'));
    dataDir = path.join(root, 'data');
    await fs.mkdir(path.join(dataDir, 'sub'), { recursive: true });
    await fs.copyFile('data/tinystories-calibration.txt', path.join(dataDir, 'calibration.txt'));
    await fs.writeFile(path.join(root, 'secret.txt'), 'Once upon a time there was a secret. '.repeat(2000));
    await fs.symlink('/etc/passwd', path.join(dataDir, 'passwd-link.txt'));
    await fs.symlink(path.join(root, 'secret.txt'), path.join(dataDir, 'secret-link.txt'));
    await fs.symlink('/dev/zero', path.join(dataDir, 'zero'));
    execFileSync('mkfifo', [path.join(dataDir, 'pipe.txt')]);
    s = await startTestServer({ adminToken: TOKEN, dataDir, maxJobHistory: 1 });
  });
  after(async () => {
    await s.close();
    await fs.rm(root, { recursive: true, force: true });
  });

  it('answers a file outside it and a missing one with the same bytes, revealing neither', async () => {
    const bodies: string[] = [];
    for (const calibration of ['/etc/passwd', '/etc/nope']) {
      const res = await admin(s, 'POST', '/admin/prune', { target: 0.3, ...quick, calibration });
      assert.equal(res.status, 400);
      bodies.push(await res.text());
    }
    assert.equal(bodies[0], bodies[1], 'an existing and a missing file outside the data directory get byte-identical answers');
    const err = (JSON.parse(bodies[0]!) as { error: { message: string; param: string } }).error;
    assert.equal(err.param, 'calibration');
    assert.match(err.message, /calibration must name a regular file under the server's data directory \(--data-dir\)/);
    assert.doesNotMatch(err.message, /passwd|nope|no such|ENOENT/);
  });

  it('refuses ../ traversal, absolute paths outside, and symlinks inside that point outside, for calibration and recovery_data alike', async () => {
    const outside = [
      '../secret.txt',
      `sub/../../secret.txt`,
      path.join(root, 'secret.txt'),
      'secret-link.txt',
      'passwd-link.txt',
      '../../../../../../etc/passwd',
      'zero',
      '/dev/zero',
      'missing.txt',
      '.',
    ];
    let first: string | undefined;
    for (const file of outside) {
      for (const field of ['calibration', 'recovery_data']) {
        const res = await admin(s, 'POST', '/admin/prune', { target: 0.3, ...quick, recovery: 'full', [field]: file });
        const text = await res.text();
        assert.equal(res.status, 400, `${field} ${file}: ${text}`);
        const err = (JSON.parse(text) as { error: { message: string; param: string } }).error;
        assert.equal(err.param, field, file);
        if (field === 'calibration') {
          first ??= text;
          assert.equal(text, first, `${file}: the same answer as every other refused path`);
        }
      }
    }
    assert.deepEqual(((await (await admin(s, 'GET', '/admin/prune')).json()) as { data: unknown[] }).data, [], 'no job was started');
  });

  it('refuses a FIFO or a directory under it at once with a 400 naming the field, then starts a normal prune', async () => {
    const t0 = Date.now();
    const fifo = await assertOpenAIError(await admin(s, 'POST', '/admin/prune', { target: 0.3, ...quick, calibration: 'pipe.txt' }), 400, 'calibration');
    assert.match(fifo.message, /pipe\.txt: a FIFO \(named pipe\); a regular text file is needed/);
    const dir = await assertOpenAIError(await admin(s, 'POST', '/admin/prune', { target: 0.3, ...quick, recovery: 'full', recovery_data: 'sub' }), 400, 'recovery_data');
    assert.match(dir.message, /a directory; a regular text file is needed/);
    assert.ok(Date.now() - t0 < 30_000, 'refused without waiting on the FIFO');
    await startAndCancel(s, {});
  });

  it('accepts a file under it, named relative to it or by its absolute path', async () => {
    await startAndCancel(s, { calibration: 'calibration.txt' });
    await startAndCancel(s, { calibration: path.join(dataDir, 'sub', '..', 'calibration.txt') });
  });

  it('keeps --max-job-history finished jobs; an older one answers 404 saying it aged out', async () => {
    const older = await startAndCancel(s, {});
    const newer = await startAndCancel(s, {});
    const list = (await (await admin(s, 'GET', '/admin/prune')).json()) as { data: { id: string }[] };
    assert.deepEqual(
      list.data.map((j) => j.id),
      [newer],
    );
    for (const method of ['GET', 'DELETE']) {
      const err = await assertOpenAIError(await admin(s, method, `/admin/prune/${older}`), 404);
      assert.equal(err.code, 'job_aged_out');
      assert.match(err.message, new RegExp(`Prune job '${older}' aged out: the server keeps the last 1 finished jobs \\(--max-job-history\\)`));
    }
    const never = await assertOpenAIError(await admin(s, 'GET', '/admin/prune/prune-999'), 404);
    assert.equal(never.code, 'job_not_found');
  });

  it('refuses the id "default" (it would shadow the alias) and an id an existing variant has', async () => {
    const reserved = await assertOpenAIError(await admin(s, 'POST', '/admin/prune', { target: 0.3, ...quick, id: 'default' }), 400, 'id');
    assert.match(reserved.message, /"default" is reserved/);
    const taken = await assertOpenAIError(await admin(s, 'POST', '/admin/prune', { target: 0.3, ...quick, id: 'stories260K' }), 409);
    assert.match(taken.code ?? '', /exists/);
    assert.match(taken.message, /variant 'stories260K' (is )?already/);
  });
});

describe('POST /admin/prune without --data-dir', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ adminToken: TOKEN })));
  after(async () => s.close());

  it('reads files from the bundled data/ directory only', async () => {
    await startAndCancel(s, { calibration: 'tinystories-calibration.txt' });
    await startAndCancel(s, { calibration: path.resolve('data/tinystories-heldout.txt') });
    const err = await assertOpenAIError(await admin(s, 'POST', '/admin/prune', { target: 0.3, ...quick, calibration: path.resolve('package.json') }), 400, 'calibration');
    assert.match(err.message, /under the server's data directory/);
  });
});
