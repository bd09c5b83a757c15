/**
 * The model store wired into the server, over real HTTP with servers started in this process on
 * one store directory: restarts restore the recorded state, a repeated prune is a cache hit,
 * replicas converge through the manifest, entries can be listed, purged and evicted, and metrics
 * count it all.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultServerConfig, type ServerConfig } from '../../src/server/config.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { runMop } from '../helpers/run-cli.ts';
import { postJson, scrape, startTestServer, waitFor } from './helpers/server.ts';
import { waitForPruneJobs } from './helpers/prune-jobs.ts';

const TOKEN = 'store-admin-token-0123';
const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
// Small calibration and no recovery fine-tuning (on by default): prunes of seconds, not minutes.
const quick = { samples: 8, seq_len: 64, recovery: 'none' };

export const admin = (s: RunningServer, method: string, p: string, body?: unknown) =>
  fetch(s.url + '/admin' + p, { method, headers: auth, ...(body !== undefined && { body: JSON.stringify(body) }) });

export async function json<T = Record<string, unknown>>(res: Response | Promise<Response>): Promise<T> {
  const r = await res;
  const text = await r.text();
  assert.ok(r.status < 300, `status ${r.status}: ${text}`);
  return JSON.parse(text) as T;
}

/** Start a prune and wait for it to finish; returns the job with its report. */
export async function prune(s: RunningServer, body: Record<string, unknown>): Promise<{ id: string; status: string; variant: string; fromStore: boolean; storeKey: string; error: string | null; report?: { result: { ratio: number } } }> {
  const started = await json<{ id: string }>(admin(s, 'POST', '/prune', { ...quick, ...body }));
  await waitForPruneJobs(s.service.jobs);
  return json(admin(s, 'GET', `/prune/${started.id}`));
}

/** The model a request without `model` is answered by. */
export async function defaultModel(s: RunningServer): Promise<string> {
  return (await json<{ model: string }>(postJson(s.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 2, temperature: 0 }))).model;
}

export async function modelIds(s: RunningServer): Promise<string[]> {
  return (await json<{ data: { id: string }[] }>(fetch(s.url + '/v1/models'))).data.map((m) => m.id).sort();
}

async function storeDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'mop-serve-store-'));
}

function startWithStore(dir: string, overrides: Partial<ServerConfig> = {}, lines?: string[]): Promise<RunningServer> {
  return startTestServer({ adminToken: TOKEN, maxBatch: 2, modelStore: dir, modelStorePollMs: 100, ...overrides }, lines ? { log: (l) => lines.push(l) } : {});
}

describe('a server with a model store, restarted', () => {
  let dir: string;
  let first: RunningServer;
  let key: string;
  before(async () => {
    dir = await storeDir();
    first = await startWithStore(dir);
  });
  after(async () => {
    await first?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('writes every pruned variant into the store and records it in the manifest', async () => {
    const job = await prune(first, { target: 0.3, id: 'mop-30' });
    assert.equal(job.status, 'succeeded', job.error ?? '');
    assert.equal(job.fromStore, false);
    assert.match(job.storeKey, /^[0-9a-f]{64}$/);
    key = job.storeKey;
    const entry = await fs.readdir(path.join(dir, 'entries', key));
    for (const f of ['config.json', 'model.safetensors', 'report.json', 'entry.json']) assert.ok(entry.includes(f), `${f} in ${entry}`);
    const manifest = JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8'));
    assert.deepEqual(manifest.variants, [{ id: 'mop-30', key }]);
    assert.equal(manifest.active, 'mop-30');
    const listed = await json<{ data: { key: string; served: boolean; served_here: string[]; recipe: { target: number; referenceBlocks: number } }[] }>(admin(first, 'GET', '/store'));
    assert.equal(listed.data.length, 1);
    assert.equal(listed.data[0]!.key, key);
    assert.equal(listed.data[0]!.recipe.target, 0.3);
    assert.deepEqual(listed.data[0]!.served_here, ['mop-30']);
    const m = await scrape(first.url);
    assert.equal(m.get('mop_model_store_entries'), 1);
    assert.equal(m.get('mop_model_store_misses_total'), 1);
    assert.equal(m.get('mop_model_store_hits_total'), 0);
    assert.ok((m.get('mop_model_store_bytes') ?? 0) > 100_000);
  });

  it('comes back serving the recorded variants, active variant and split, without pruning', async () => {
    await json(admin(first, 'PUT', '/split', { variant: 'stories260K', share: 0.25 }));
    const before = await modelIds(first);
    await first.close();
    const again = await startWithStore(dir);
    first = again;
    assert.deepEqual(await modelIds(again), before);
    assert.equal(again.service.active!.id, 'mop-30');
    assert.deepEqual(again.service.split, { variant: 'stories260K', share: 0.25 });
    assert.equal(again.service.jobs.list().length, 0, 'nothing was pruned');
    again.service.random = () => 0.9; // outside the split's share
    assert.equal(await defaultModel(again), 'mop-30');
  });

  it('answers a repeated prune from the store (a cache hit, report included) and unloads with ?purge=true', async () => {
    await json(admin(first, 'DELETE', '/split'));
    await json(admin(first, 'POST', '/models/stories260K/activate'));
    await json(admin(first, 'DELETE', '/models/mop-30'));
    assert.deepEqual(await modelIds(first), ['stories260K']);
    assert.ok((await fs.readdir(path.join(dir, 'entries'))).includes(key), 'unloading keeps the entry');

    const job = await prune(first, { target: 0.3, id: 'again' });
    assert.equal(job.status, 'succeeded', job.error ?? '');
    assert.equal(job.fromStore, true);
    assert.equal(job.storeKey, key);
    assert.ok(job.report && Math.abs(job.report.result.ratio - 0.3) < 0.01, 'the stored report comes with the job');
    assert.equal(await defaultModel(first), 'again');
    const m = await scrape(first.url);
    assert.equal(m.get('mop_model_store_hits_total'), 1);

    await json(admin(first, 'POST', '/models/stories260K/activate'));
    const bad = await admin(first, 'DELETE', '/models/again?purge=maybe');
    assert.equal(bad.status, 400);
    const purged = await json<{ purged: boolean }>(admin(first, 'DELETE', '/models/again?purge=true'));
    assert.equal(purged.purged, true);
    assert.deepEqual(await fs.readdir(path.join(dir, 'entries')), []);
    const manifest = JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8'));
    assert.deepEqual(manifest.variants, []);
    assert.equal((await json<{ data: unknown[] }>(admin(first, 'GET', '/store'))).data.length, 0);
  });
});

describe('two servers on one model store', () => {
  let dir: string;
  let a: RunningServer;
  let b: RunningServer;
  before(async () => {
    dir = await storeDir();
    a = await startWithStore(dir);
    b = await startWithStore(dir);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('a variant pruned and activated on one is loaded (not pruned) and activated on the other within the poll interval', async () => {
    const job = await prune(a, { target: 0.2, id: 'mop-20' });
    assert.equal(job.status, 'succeeded', job.error ?? '');
    await waitFor(() => b.service.active?.id === 'mop-20', 30_000, 'the second server to activate mop-20');
    assert.equal(b.service.jobs.list().length, 0, 'the second server pruned nothing');
    assert.equal(await defaultModel(a), 'mop-20');
    assert.equal(await defaultModel(b), 'mop-20');
  });

  it('an activation, a split and an unload on one reach the other', async () => {
    await json(admin(b, 'POST', '/models/stories260K/activate'));
    await waitFor(() => a.service.active?.id === 'stories260K', 30_000, 'the activation to reach the first server');
    assert.equal(await defaultModel(a), 'stories260K');
    await json(admin(a, 'PUT', '/split', { variant: 'mop-20', share: 0.5 }));
    await waitFor(() => b.service.split?.variant === 'mop-20', 30_000, 'the split to reach the second server');
    await json(admin(a, 'DELETE', '/models/mop-20'));
    await waitFor(() => !b.service.has('mop-20'), 30_000, 'the unload to reach the second server');
    assert.equal(b.service.split, undefined);
  });
});

describe('a model store over its size limit', () => {
  let dir: string;
  let s: RunningServer;
  before(async () => {
    dir = await storeDir();
    s = await startTestServer({ adminToken: TOKEN, maxBatch: 2, modelStore: dir, modelStoreMaxBytes: 1 }, { storeEvictGraceMs: 0 });
  });
  after(async () => {
    await s?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('evicts entries no manifest references, least recently used first, and keeps the served ones', async () => {
    const first = await prune(s, { target: 0.2, id: 'p20' });
    const second = await prune(s, { target: 0.3, id: 'p30' });
    assert.deepEqual((await fs.readdir(path.join(dir, 'entries'))).sort(), [first.storeKey, second.storeKey].sort(), 'both are served: neither is evicted');
    await json(admin(s, 'DELETE', '/models/p20'));
    assert.deepEqual(await fs.readdir(path.join(dir, 'entries')), [second.storeKey]);
  });
});

describe('mop prune --model-store, then a server with the same start-up target', () => {
  let dir: string;
  let s: RunningServer | undefined;
  after(async () => {
    await s?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('the server loads the entry the CLI wrote instead of pruning (what the Helm hook Job relies on)', async () => {
    dir = await storeDir();
    const cli = await runMop(['prune', '--model-store', dir, '--target', '0.3', '--samples', '8', '--seq-len', '64', '--recovery', 'none', '--threads', '1', '--quiet'], {}, 300_000);
    assert.equal(cli.code, 0, cli.stderr);
    const key = /entry ([0-9a-f]{64}) written/.exec(cli.stdout)?.[1];
    assert.ok(key, cli.stdout);
    const again = await runMop(['prune', '--model-store', dir, '--target', '0.3', '--samples', '8', '--seq-len', '64', '--recovery', 'none', '--threads', '1', '--quiet'], {}, 120_000);
    assert.match(again.stdout, new RegExp(`entry ${key} is already there; nothing to prune`));

    // A file of the entry changed at the same size: the CLI prunes again and rewrites the entry.
    const entry = path.join(dir, 'entries', key);
    const files = await Promise.all((await fs.readdir(entry)).map(async (f) => ({ f, size: (await fs.stat(path.join(entry, f))).size })));
    const weights = path.join(entry, files.sort((a, b) => b.size - a.size)[0]!.f);
    const bytes = await fs.readFile(weights);
    const original = Buffer.from(bytes);
    bytes[bytes.length - 1]! ^= 0xff;
    await fs.writeFile(weights, bytes);
    const rewritten = await runMop(['prune', '--model-store', dir, '--target', '0.3', '--samples', '8', '--seq-len', '64', '--recovery', 'none', '--threads', '1', '--quiet'], {}, 300_000);
    assert.equal(rewritten.code, 0, rewritten.stderr);
    assert.doesNotMatch(rewritten.stdout, /already there/);
    assert.deepEqual(await fs.readFile(weights), original, 'the entry holds the pruned weights again');

    const lines: string[] = [];
    s = await startWithStore(dir, { pruneTarget: 0.3, prune: { ...defaultServerConfig.prune, samples: 8, seqLen: 64, recovery: 'none' } }, lines);
    await waitForPruneJobs(s.service.jobs);
    const [job] = s.service.jobs.list();
    assert.equal(job!.status, 'succeeded', job!.error ?? '');
    assert.equal(job!.fromStore, true, lines.join('\n'));
    assert.equal(job!.storeKey, key);
    assert.equal(await defaultModel(s), job!.variant);
    assert.ok(lines.some((l) => /is in the model store .*loading it instead of pruning/.test(l)));
  });

  it('refuses to run without --out or --model-store', async () => {
    const r = await runMop(['prune', '--target', '0.3']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /mop: error: say where the pruned model goes: --out/);
  });
});
