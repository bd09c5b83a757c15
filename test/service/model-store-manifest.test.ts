import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  ManifestCorruptError,
  type ManifestSnapshot,
  type ManifestState,
  ManifestVersionError,
  ModelStore,
  StoreInputError,
} from '../../src/service/model-store/index.ts';
import { filesWriter, namesIn, origin, repoRoot, runStoreChild, spawnStoreChild, sampleFiles, tempDir, until } from './model-store-helpers.ts';

const state = (active: string | null = 'mop-40'): ManifestState => ({
  variants: [{ id: 'mop-40', key: origin(1).key }],
  active,
  split: { variant: 'mop-40', share: 0.25 },
});

describe('model store manifest', () => {
  it('is absent on a new store and reads back what was written, stamped with version, time and writer', async (t) => {
    const store = await ModelStore.open(await tempDir(t), { writerName: 'replica-a' });
    assert.deepEqual(await store.readManifest(), { manifest: null, digest: 'absent' });
    const before = Date.now();
    const written = await store.writeManifest(state());
    const { manifest, digest } = await store.readManifest();
    assert.deepEqual(manifest, written);
    assert.equal(manifest?.version, 1);
    assert.equal(manifest?.writer, 'replica-a');
    assert.ok(Date.parse(manifest!.updatedAt) >= before - 1000);
    assert.deepEqual({ variants: manifest!.variants, active: manifest!.active, split: manifest!.split }, state());
    assert.match(digest, /^[0-9a-f]{64}$/);
    assert.deepEqual(await namesIn(path.join(store.root, 'tmp')), []);
  });

  it('updateManifest changes the current state', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    await store.writeManifest(state());
    const next = await store.updateManifest((current) => ({ ...current!, active: null, split: null }));
    assert.equal(next.active, null);
    assert.deepEqual((await store.readManifest()).manifest?.variants, state().variants);
  });

  it('of a newer version is an error naming the file for read, manifest write, put, remove and evict, and its bytes stay unchanged', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const o = origin();
    await store.put(o.key, filesWriter(sampleFiles), o);
    const file = path.join(root, 'manifest.json');
    const future = Buffer.from(JSON.stringify({ version: 2, variants: [], replicas: { quorum: 3 } }));
    await fs.writeFile(file, future);
    const isVersionError = (e: unknown) => e instanceof ManifestVersionError && e.message.includes(file) && /manifest version 2/.test(e.message);
    await assert.rejects(store.readManifest(), isVersionError);
    await assert.rejects(store.writeManifest(state()), isVersionError);
    await assert.rejects(store.put(origin(9).key, filesWriter(sampleFiles), origin(9)), isVersionError);
    await assert.rejects(store.remove(o.key, { force: true }), isVersionError);
    await assert.rejects(store.evict(0, { graceMs: 0 }), isVersionError);
    assert.deepEqual(await fs.readFile(file), future);
    assert.deepEqual(await namesIn(path.join(root, 'entries')), [o.key]);
    assert.ok(await store.get(o.key), 'existing entries can still be read');
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
  });

  it('that is not valid JSON is a ManifestCorruptError naming the file, and is not overwritten', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const file = path.join(root, 'manifest.json');
    await fs.writeFile(file, '{"version": 1, "variants": [');
    await assert.rejects(store.readManifest(), (e: unknown) => e instanceof ManifestCorruptError && e.file === file && e.message.startsWith(`${file} is not a valid model-store manifest: not valid JSON`));
    await assert.rejects(store.writeManifest(state()), ManifestCorruptError);
    assert.equal(await fs.readFile(file, 'utf8'), '{"version": 1, "variants": [');
    const o = origin();
    assert.equal((await store.put(o.key, filesWriter(sampleFiles), o)).outcome, 'written', 'entries do not depend on the manifest');
  });

  it('with bad fields is a ManifestCorruptError saying which', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const file = path.join(root, 'manifest.json');
    await fs.writeFile(file, JSON.stringify({ version: 1, variants: [{ id: 'a', key: 'short' }], active: null, split: null, updatedAt: '', writer: '' }));
    await assert.rejects(store.readManifest(), /variants\[0\]\.key must be a 64-character lowercase hex store key/);
    await fs.writeFile(file, JSON.stringify({ version: '1' }));
    await assert.rejects(store.readManifest(), /version must be a positive integer, got "1"/);
  });

  it('refuses a malformed state before writing anything', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    await store.writeManifest(state());
    const before = await fs.readFile(path.join(store.root, 'manifest.json'));
    const key = origin(1).key;
    const bad: [ManifestState, RegExp][] = [
      [{ variants: [{ id: 'a', key }, { id: 'a', key }], active: null, split: null }, /variants\[1\]\.id "a" is listed twice/],
      [{ variants: [{ id: 'a', key: 'nope' }], active: null, split: null }, /variants\[0\]\.key/],
      [{ variants: [], active: '', split: null }, /active must be a non-empty string or null/],
      [{ variants: [], active: null, split: { variant: 'a', share: 2 } }, /split\.share must be a number in \[0, 1\], got 2/],
    ];
    for (const [s, message] of bad) await assert.rejects(store.writeManifest(s), (e: unknown) => e instanceof StoreInputError && message.test(e.message));
    assert.deepEqual(await fs.readFile(path.join(store.root, 'manifest.json')), before);
  });

  it('a writer killed before its rename leaves the previous manifest in force, and its temporary file is removed on open', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    await store.writeManifest(state('mop-40'));
    const before = await fs.readFile(path.join(root, 'manifest.json'));
    // A writer killed between writing its temporary file and the rename leaves exactly this behind.
    const child = await runStoreChild(`const fs = await import('node:fs/promises');
      const { scratchName } = await import(${JSON.stringify(path.join(repoRoot, 'src/service/model-store/scratch-names.ts'))});
      await fs.writeFile(args[0] + '/tmp/' + scratchName('manifest'), '{"version": 1, "variants": [], "act');
      process.kill(process.pid, 'SIGKILL');`, [root]);
    assert.equal(child.signal, 'SIGKILL', child.stderr);
    assert.equal((await namesIn(path.join(root, 'tmp'))).length, 1);
    assert.deepEqual(await fs.readFile(path.join(root, 'manifest.json')), before);
    assert.equal((await store.readManifest()).manifest?.active, 'mop-40');
    await ModelStore.open(root);
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
  });

  it('a writer killed with SIGKILL at a random instant of a stream of updates leaves a whole manifest', async (t) => {
    const root = await tempDir(t);
    await ModelStore.open(root);
    const child = spawnStoreChild(
      `const s = await store.ModelStore.open(args[0]);
       const key = args[1];
       for (let i = 0; ; i++) await s.writeManifest({ variants: [{ id: 'v' + i, key }], active: 'v' + i, split: null });`,
      [root, origin().key],
    );
    await until(async () => (await namesIn(root)).includes('manifest.json'), 20_000, 'the first manifest');
    await new Promise((r) => setTimeout(r, 50 + Math.random() * 200));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    const reopened = await ModelStore.open(root);
    const { manifest } = await reopened.readManifest();
    assert.match(manifest!.active!, /^v\d+$/);
    assert.deepEqual(manifest!.variants.map((v) => v.id), [manifest!.active]);
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
    t.diagnostic(`killed after ${manifest!.active!.slice(1)} updates`);
  });
});

describe('watching the manifest', () => {
  it('reports a manifest written by another process within the polling interval', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const { digest } = await store.readManifest();
    const seen: { snapshot: ManifestSnapshot; at: number }[] = [];
    const intervalMs = 100;
    const watch = store.watchManifest(intervalMs, (snapshot) => void seen.push({ snapshot, at: Date.now() }), { baseline: digest });
    t.after(() => watch.stop());
    const child = await runStoreChild(
      `const s = await store.ModelStore.open(args[0], { writerName: 'replica-b' });
       await s.writeManifest(JSON.parse(args[1]));
       console.log(Date.now());`,
      [root, JSON.stringify(state('mop-40'))],
    );
    assert.equal(child.code, 0, child.stderr);
    const writtenAt = Number(child.stdout.trim());
    // The bound is the interval; the slack is for a loaded CI machine, not for the design.
    await until(() => seen.length > 0, intervalMs + 2000, 'the watcher to see the other process write');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.snapshot.manifest?.writer, 'replica-b');
    assert.equal(seen[0]!.snapshot.manifest?.active, 'mop-40');
    t.diagnostic(`seen ${seen[0]!.at - writtenAt} ms after the write (interval ${intervalMs} ms)`);
  });

  it('does not report this store’s own writes, and does report a later one by someone else', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const other = await ModelStore.open(root, { writerName: 'other' });
    const seen: ManifestSnapshot[] = [];
    const watch = store.watchManifest(20, (s) => void seen.push(s), { baseline: (await store.readManifest()).digest });
    t.after(() => watch.stop());
    await store.writeManifest(state('mop-40'));
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(seen.length, 0, 'its own write was reported');
    await other.writeManifest(state(null));
    await until(() => seen.length === 1, 3000, 'the other writer to be seen');
    assert.equal(seen[0]!.manifest?.writer, 'other');
  });

  it('without a baseline reports the current manifest first', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    await (await ModelStore.open(store.root, { writerName: 'earlier' })).writeManifest(state());
    const seen: ManifestSnapshot[] = [];
    const watch = store.watchManifest(50, (s) => void seen.push(s));
    t.after(() => watch.stop());
    await until(() => seen.length === 1, 3000, 'the first report');
    assert.equal(seen[0]!.manifest?.writer, 'earlier');
  });

  it('reports an unusable manifest to onError once, then a repaired one to onChange', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const other = await ModelStore.open(root, { writerName: 'other' });
    const errors: unknown[] = [];
    const seen: ManifestSnapshot[] = [];
    const watch = store.watchManifest(20, (s) => void seen.push(s), { baseline: 'absent', onError: (e) => errors.push(e) });
    t.after(() => watch.stop());
    await fs.writeFile(path.join(root, 'manifest.json'), 'not json');
    await until(() => errors.length > 0, 3000, 'the corrupt manifest to be reported');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof ManifestCorruptError);
    await fs.rm(path.join(root, 'manifest.json'));
    await other.writeManifest(state());
    await until(() => seen.some((s) => s.manifest?.writer === 'other'), 3000, 'the repaired manifest');
  });

  it('stops reporting after stop()', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const other = await ModelStore.open(store.root, { writerName: 'other' });
    const seen: ManifestSnapshot[] = [];
    const watch = store.watchManifest(20, (s) => void seen.push(s), { baseline: 'absent' });
    watch.stop();
    await other.writeManifest(state());
    await new Promise((r) => setTimeout(r, 150));
    assert.deepEqual(seen, []);
  });
});
