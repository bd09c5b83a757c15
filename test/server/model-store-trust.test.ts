/**
 * The model store under hostile input and faults, over real HTTP with servers started in this
 * process: an entry whose weights were changed on the volume (same size) is not served, a refused
 * purge leaves the variant serving, and a manifest that cannot be written loses nothing.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ServerConfig } from '../../src/server/config.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { ModelStore } from '../../src/service/model-store/index.ts';
import { okJson, scrape, startTestServer, waitFor } from './helpers/server.ts';
import { waitForPruneJobs } from './helpers/prune-jobs.ts';

const TOKEN = 'store-trust-token-0123';
const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
// Small calibration and no recovery fine-tuning: prunes of seconds, not minutes.
const quick = { samples: 8, seq_len: 64, recovery: 'none' };

const admin = (s: RunningServer, method: string, p: string, body?: unknown) =>
  fetch(s.url + '/admin' + p, { method, headers: auth, ...(body !== undefined && { body: JSON.stringify(body) }) });

const json = okJson;

interface Job {
  id: string;
  status: string;
  variant: string | null;
  fromStore: boolean;
  storeKey: string;
  error: string | null;
}

async function prune(s: RunningServer, body: Record<string, unknown>): Promise<Job> {
  const started = await json<{ id: string }>(admin(s, 'POST', '/prune', { ...quick, ...body }));
  await waitForPruneJobs(s.service.jobs);
  return json<Job>(admin(s, 'GET', `/prune/${started.id}`));
}

const modelIds = async (s: RunningServer) => (await json<{ data: { id: string }[] }>(fetch(s.url + '/v1/models'))).data.map((m) => m.id).sort();

/** A completion from `model` answers 200 (it is serving). */
async function answers(s: RunningServer, model: string): Promise<boolean> {
  const r = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, prompt: 'Once', max_tokens: 2, temperature: 0 }) });
  await r.arrayBuffer();
  return r.status === 200;
}

interface StoreListing {
  data: { key: string; problem: string | null; served_here: string[] }[];
}

function startWithStore(dir: string, lines: string[], overrides: Partial<ServerConfig> = {}): Promise<RunningServer> {
  return startTestServer({ adminToken: TOKEN, maxBatch: 2, modelStore: dir, modelStorePollMs: 100, ...overrides }, { log: (l) => lines.push(l) });
}

describe('a store entry whose weights were changed on the volume, size kept', () => {
  let dir: string;
  let s: RunningServer | undefined;
  let key: string;
  let weights: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-store-trust-'));
    s = await startWithStore(dir, []);
    const job = await prune(s, { target: 0.3, id: 'mop-30' });
    assert.equal(job.status, 'succeeded', job.error ?? '');
    key = job.storeKey;
    await s.close();
    s = undefined;
    weights = path.join(dir, 'entries', key, 'model.safetensors');
    const bytes = await fs.readFile(weights);
    bytes[bytes.length - 1]! ^= 0x01; // one bit of the last weight
    await fs.writeFile(weights, bytes);
  });
  after(async () => {
    await s?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('is not served after a restart: one log line naming the entry and what to do, a problem in GET /admin/store, the entry kept', async () => {
    const lines: string[] = [];
    s = await startWithStore(dir, lines);
    assert.deepEqual(await modelIds(s), ['stories260K']);
    const complaints = lines.filter((l) => l.includes(key));
    assert.equal(complaints.length, 1, lines.join('\n'));
    assert.match(complaints[0]!, /skipping variant 'mop-30': model-store entry [0-9a-f]{64} is invalid: .*model\.safetensors has SHA-256 [0-9a-f]{64}, entry\.json records [0-9a-f]{64}/);
    assert.match(complaints[0]!, /run the same prune again to rewrite it, or delete the entry's directory/);
    const listed = await json<StoreListing>(admin(s, 'GET', '/store'));
    assert.equal(listed.data.length, 1);
    assert.match(listed.data[0]!.problem ?? '', /model\.safetensors has SHA-256 .*its content changed after it was written/);
    assert.ok((await fs.readdir(path.join(dir, 'entries'))).includes(key), 'the damaged entry is not deleted');
  });

  it('the same prune again rewrites the entry instead of loading the changed weights', async () => {
    const job = await prune(s!, { target: 0.3, id: 'mop-30' });
    assert.equal(job.status, 'succeeded', job.error ?? '');
    assert.equal(job.fromStore, false, 'pruned again, not loaded from the damaged entry');
    assert.equal(job.storeKey, key);
    const store = await ModelStore.open(dir, { cleanOnOpen: false });
    assert.equal((await store.verify(key, { contents: true })).ok, true);
    const listed = await json<StoreListing>(admin(s!, 'GET', '/store'));
    assert.equal(listed.data[0]!.problem, null);
    assert.ok(await answers(s!, 'mop-30'));
  });
});

describe('a model store whose manifest cannot be written', () => {
  let dir: string;
  let s: RunningServer | undefined;
  const lines: string[] = [];
  const tmp = () => path.join(dir, 'tmp');
  const manifest = async () => JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8')) as { active: string | null; variants: { id: string }[] };
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-store-trust-'));
    s = await startWithStore(dir, lines);
    const job = await prune(s, { target: 0.3, id: 'mop-30' });
    assert.equal(job.status, 'succeeded', job.error ?? '');
    // Manifests are written through tmp/: a regular file in its place makes every write fail.
    await fs.rm(tmp(), { recursive: true });
    await fs.writeFile(tmp(), '');
  });
  after(async () => {
    await s?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('an admin change says in its answer that the manifest did not record it, and the failures are counted', async () => {
    const r = await json<{ id: string; active: boolean; model_store_warning?: string }>(admin(s!, 'POST', '/models/stories260K/activate'));
    assert.equal(r.active, true);
    assert.match(r.model_store_warning ?? '', /manifest could not be written .*activate 'stories260K' applies on this replica only: other replicas do not see it/);
    assert.equal((await manifest()).active, 'mop-30', 'the manifest on disk is unchanged');
    assert.equal(s!.service.active!.id, 'stories260K', 'serving changed here');
    const m = await scrape(s!.url);
    assert.ok((m.get('mop_model_store_errors_total{op="manifest_write"}') ?? 0) >= 1, [...m.keys()].filter((k) => k.startsWith('mop_model_store')).join(' '));
    assert.equal(m.get('mop_model_store_errors_total{op="load"}'), 0);
    assert.equal(lines.filter((l) => /could not record 'activate 'stories260K''/.test(l)).length, 1, lines.join('\n'));
  });

  it('the change is written once the manifest can be written again, and later answers carry no warning', async () => {
    await fs.rm(tmp());
    await fs.mkdir(tmp());
    await waitFor(async () => (await manifest()).active === 'stories260K', 10_000, 'the pending activation to reach the manifest');
    assert.deepEqual((await manifest()).variants.map((v) => v.id), ['mop-30']);
    const r = await json<Record<string, unknown>>(admin(s!, 'PUT', '/split', { variant: 'mop-30', share: 0.5 }));
    assert.equal(r.model_store_warning, undefined);
    assert.ok(lines.some((l) => /the manifest is written again; recorded activate 'stories260K'/.test(l)), lines.join('\n'));
  });
});

describe('a purge the store refuses', () => {
  let dir: string;
  let s: RunningServer | undefined;
  let key: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-store-trust-'));
    s = await startWithStore(dir, []);
    const job = await prune(s, { target: 0.3, id: 'mop-30', activate: false });
    assert.equal(job.status, 'succeeded', job.error ?? '');
    key = job.storeKey;
  });
  after(async () => {
    await s?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function assertRefusedAndStillServing(): Promise<void> {
    const r = await admin(s!, 'DELETE', '/models/mop-30?purge=true');
    const body = (await r.json()) as { error: { code: string; message: string } };
    assert.equal(r.status, 409, JSON.stringify(body));
    assert.equal(body.error.code, 'model_store_refused');
    assert.ok((await modelIds(s!)).includes('mop-30'), 'the variant is still listed');
    assert.ok(await answers(s!, 'mop-30'), 'and still serving');
    assert.ok((await fs.readdir(path.join(dir, 'entries'))).includes(key), 'the entry is kept');
  }

  it('when another replica serves the entry under another id: 409, and the variant is still listed and serving', async () => {
    const other = await ModelStore.open(dir, { writerName: 'other-replica', cleanOnOpen: false });
    await other.updateManifest((m) => ({ ...m!, variants: [...m!.variants, { id: 'elsewhere', key }] }));
    await assertRefusedAndStillServing();
  });

  it('when the manifest is corrupt (it cannot say who uses the entry): 409, and the variant is still listed and serving', async () => {
    await fs.writeFile(path.join(dir, 'manifest.json'), '{"version": 1, "variants": [');
    await assertRefusedAndStillServing();
  });
});
