import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EntryReferencedError, ManifestCorruptError, ModelStore } from '../../src/service/model-store/index.ts';
import { filesWriter, namesIn, origin, sampleFiles, tempDir } from './model-store-helpers.ts';

const entryBytes = (files: Record<string, string | Uint8Array>) => Object.values(files).reduce((n, c) => n + Buffer.byteLength(c), 0);

/** Pretend an entry was last used `minutesAgo` minutes ago. */
async function lastUsed(store: ModelStore, key: string, minutesAgo: number): Promise<void> {
  const at = new Date(Date.now() - minutesAgo * 60_000);
  await fs.utimes(path.join(store.entryDir(key), 'last-used'), at, at);
}

describe('model store hygiene', () => {
  it('list shows each entry with key, recipe, size, creation, last use and the variants serving it', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const a = origin(1);
    const b = origin(2);
    await store.put(a.key, filesWriter(sampleFiles), a);
    await store.put(b.key, filesWriter({ 'model.safetensors': 'x' }), b);
    await store.writeManifest({ variants: [{ id: 'mop-40', key: a.key }], active: 'mop-40', split: null });
    const byKey = new Map((await store.list()).map((e) => [e.key, e]));
    assert.equal(byKey.size, 2);
    const ea = byKey.get(a.key)!;
    assert.deepEqual(ea.recipe, a.recipe);
    assert.equal(ea.sourceDigest, a.sourceDigest);
    assert.deepEqual(ea.referencedBy, ['mop-40']);
    assert.deepEqual(byKey.get(b.key)!.referencedBy, []);
    assert.equal(ea.problem, null);
    const entryJson = (await fs.stat(path.join(ea.dir, 'entry.json'))).size;
    assert.equal(ea.bytes, entryBytes(sampleFiles) + entryJson);
    assert.ok(Date.parse(ea.createdAt!) <= Date.parse(ea.lastUsedAt) + 1000);
  });

  it('get and a put that hits move an entry’s last use forward; verify does not', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const a = origin(1);
    await store.put(a.key, filesWriter(sampleFiles), a);
    const used = async () => Date.parse((await store.list())[0]!.lastUsedAt);
    for (const use of [() => store.get(a.key), () => store.put(a.key, filesWriter(sampleFiles), a)]) {
      await lastUsed(store, a.key, 60);
      const before = await used();
      await use();
      const after = await used();
      assert.ok(after - before > 59 * 60_000, `last use moved from ${before} to ${after}`);
    }
    await lastUsed(store, a.key, 60);
    const before = await used();
    await store.verify(a.key, { contents: true });
    assert.equal(await used(), before);
  });

  it('list shows a damaged entry with the reason, and never scratch or foreign names', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const a = origin(1);
    const { dir } = await store.put(a.key, filesWriter(sampleFiles), a);
    await fs.truncate(path.join(dir, 'model.safetensors'), 1);
    await fs.mkdir(path.join(store.root, 'entries', 'not-a-key'));
    await fs.mkdir(path.join(store.root, 'tmp', `${origin(2).key}.other-host.7.abcdef`));
    const listed = await store.list();
    assert.deepEqual(listed.map((e) => e.key), [a.key]);
    assert.match(listed[0]!.problem!, /model\.safetensors is 1 bytes/);
    assert.equal(listed[0]!.recipe, null);
  });

  it('remove refuses an entry the manifest serves unless forced, and then leaves nothing behind', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const a = origin(1);
    await store.put(a.key, filesWriter(sampleFiles), a);
    await store.writeManifest({ variants: [{ id: 'mop-40', key: a.key }], active: 'mop-40', split: null });
    await assert.rejects(store.remove(a.key), (e: unknown) => e instanceof EntryReferencedError && /mop-40/.test(e.message));
    assert.equal((await store.verify(a.key)).ok, true, 'the refused removal touched nothing');
    assert.equal(await store.remove(a.key, { force: true }), true);
    assert.deepEqual(await namesIn(path.join(store.root, 'entries')), []);
    assert.deepEqual(await namesIn(path.join(store.root, 'trash')), []);
    assert.equal(await store.remove(a.key, { force: true }), false, 'a second removal finds nothing');
    assert.equal(store.counters().removed, 1);
  });

  it('remove under a corrupt manifest is refused unless forced', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const a = origin(1);
    await store.put(a.key, filesWriter(sampleFiles), a);
    await fs.writeFile(path.join(store.root, 'manifest.json'), '{');
    await assert.rejects(store.remove(a.key), ManifestCorruptError);
    assert.equal(await store.remove(a.key, { force: true }), true);
  });

  it('evict removes the least recently used unreferenced entries until the store fits the limit', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const [old, older, oldest, served] = [origin(1), origin(2), origin(3), origin(4)];
    for (const o of [old, older, oldest, served]) await store.put(o.key, filesWriter(sampleFiles), o);
    await store.writeManifest({ variants: [{ id: 'served', key: served.key }], active: 'served', split: null });
    await lastUsed(store, old.key, 30);
    await lastUsed(store, older.key, 60);
    await lastUsed(store, oldest.key, 90);
    await lastUsed(store, served.key, 120); // oldest of all, but served
    const sizes = new Map((await store.list()).map((e) => [e.key, e.bytes]));
    const total = [...sizes.values()].reduce((a, b) => a + b, 0);
    const limit = total - sizes.get(oldest.key)! - 1; // one entry is not enough to fit: two must go
    const result = await store.evict(limit, { graceMs: 0 });
    assert.deepEqual(result.evicted.map((e) => e.key), [oldest.key, older.key]);
    assert.equal(result.bytesBefore, total);
    assert.ok(result.bytesAfter <= limit);
    assert.deepEqual((await namesIn(path.join(store.root, 'entries'))).sort(), [old.key, served.key].sort());
  });

  it('evict never removes served or recently used entries, even when the limit stays exceeded', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const [recent, served] = [origin(1), origin(2)];
    for (const o of [recent, served]) await store.put(o.key, filesWriter(sampleFiles), o);
    await store.writeManifest({ variants: [{ id: 'served', key: served.key }], active: 'served', split: null });
    await lastUsed(store, recent.key, 5);
    await lastUsed(store, served.key, 500);
    const result = await store.evict(0, { graceMs: 10 * 60_000 });
    assert.deepEqual(result.evicted, []);
    assert.equal(result.bytesAfter, result.bytesBefore);
    assert.equal((await namesIn(path.join(store.root, 'entries'))).length, 2);
  });

  it('evict removes damaged entries before sound ones', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const [sound, damaged] = [origin(1), origin(2)];
    for (const o of [sound, damaged]) await store.put(o.key, filesWriter(sampleFiles), o);
    await lastUsed(store, sound.key, 90);
    await lastUsed(store, damaged.key, 30);
    await fs.truncate(path.join(store.entryDir(damaged.key), 'model.safetensors'), 1);
    const before = (await store.list()).reduce((n, e) => n + e.bytes, 0);
    const result = await store.evict(before - 1, { graceMs: 0 });
    assert.deepEqual(result.evicted.map((e) => e.key), [damaged.key]);
  });

  it('keeps working when tmp/ and trash/ are deleted under an open store', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const a = origin(1);
    await store.put(a.key, filesWriter(sampleFiles), a);
    await fs.rm(path.join(store.root, 'tmp'), { recursive: true });
    await fs.rm(path.join(store.root, 'trash'), { recursive: true });
    assert.equal(await store.remove(a.key), true);
    assert.equal((await store.put(a.key, filesWriter(sampleFiles), a)).outcome, 'written');
    await store.writeManifest({ variants: [], active: null, split: null });
    assert.deepEqual(await namesIn(path.join(store.root, 'entries')), [a.key]);
  });

  it('counters add up hits, misses, writes, failed puts, invalid entries and removals', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const [a, b] = [origin(1), origin(2)];
    await store.get(a.key); // miss
    await store.put(a.key, filesWriter(sampleFiles), a); // written
    await store.put(a.key, filesWriter(sampleFiles), a); // hit
    await store.get(a.key); // hit
    await store.put(b.key, async () => Promise.reject(new Error('boom')), b).catch(() => undefined); // failed
    await store.put(b.key, filesWriter(sampleFiles), b); // written
    await fs.truncate(path.join(store.entryDir(b.key), 'config.json'), 0);
    await store.get(b.key).catch(() => undefined); // invalid
    await store.remove(a.key); // removed
    assert.deepEqual(store.counters(), { hits: 2, misses: 1, written: 2, failedPuts: 1, invalid: 1, removed: 1 });
  });
});
