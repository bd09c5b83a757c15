import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { writePrunedModel } from '../../src/mop/export.ts';
import { loadModel } from '../../src/runtime/model/load.ts';
import { syntheticSpec, syntheticVocabulary, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import {
  digestWeights,
  EntryInvalidError,
  ModelStore,
  StoreInputError,
  StoreWriteError,
  storeKey,
} from '../../src/service/model-store/index.ts';
import { ownerId } from '../../src/service/model-store/scratch-names.ts';
import { filesWriter, namesIn, origin, recipe, runStoreChild, sampleFiles, spawnStoreChild, tempDir, until } from './model-store-helpers.ts';

describe('model store entries', () => {
  it('put publishes a checkpoint written by writePrunedModel that get hands back and loadModel reads exactly', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const spec = syntheticSpec({ vocabSize: 288, hidden: 32, layers: [{ heads: 2, kvHeads: 1, headDim: 16, ffn: 48 }, { heads: 0, kvHeads: 0, headDim: 16, ffn: 24 }] });
    const weights = syntheticWeights(spec, 7);
    const sourceDigest = digestWeights(spec, weights);
    const r = recipe();
    const key = storeKey(sourceDigest, r);
    const put = await store.put(key, (dir) => writePrunedModel(dir, { spec, weights }, { tokenizer: syntheticVocabulary(288) }), { sourceDigest, recipe: r });
    assert.equal(put.outcome, 'written');
    const entry = await store.get(key);
    assert.ok(entry);
    assert.equal(entry.dir, path.join(root, 'entries', key));
    assert.deepEqual(entry.record.recipe, r);
    assert.ok(entry.record.files.some((f) => f.path === 'model.safetensors'));
    const back = await loadModel(entry.dir);
    assert.deepEqual(back.spec, spec);
    assert.equal(digestWeights(back.spec, back.weights), sourceDigest);
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
  });

  it('a second put of the same key is a hit and does not run the writer', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const o = origin();
    await store.put(o.key, filesWriter(sampleFiles), o);
    let ran = false;
    const again = await store.put(o.key, async () => void (ran = true), o);
    assert.equal(again.outcome, 'hit');
    assert.equal(ran, false);
    assert.equal(store.counters().hits, 1);
    assert.equal(store.counters().written, 1);
  });

  it('get of an absent key is undefined and counts a miss', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    assert.equal(await store.get(origin().key), undefined);
    assert.equal(store.counters().misses, 1);
  });

  it('put refuses a key that is not the content address of its source and recipe', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    await assert.rejects(store.put(origin(1).key, filesWriter(sampleFiles), origin(2)), (e: unknown) => e instanceof StoreInputError && /is not the content address/.test(e.message));
    await assert.rejects(store.get('../../etc'), StoreInputError);
  });

  it('a writer that throws midway leaves no entry and no scratch', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const o = origin();
    const failing = async (dir: string) => {
      await fs.writeFile(path.join(dir, 'config.json'), '{}');
      await fs.writeFile(path.join(dir, 'model.safetensors'), new Uint8Array(100));
      throw new Error('calibration exploded');
    };
    await assert.rejects(store.put(o.key, failing, o), (e: unknown) => e instanceof StoreWriteError && /calibration exploded/.test(e.message));
    assert.deepEqual(await namesIn(path.join(root, 'entries')), []);
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
    assert.equal(await store.get(o.key), undefined);
    assert.equal(store.counters().failedPuts, 1);
  });

  it('a full disk while writing (ENOSPC) fails the put with that reason and leaves nothing', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const o = origin();
    const diskFull = async (dir: string) => {
      await fs.writeFile(path.join(dir, 'model.safetensors'), new Uint8Array(2048));
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
    };
    await assert.rejects(store.put(o.key, diskFull, o), (e: unknown) => e instanceof StoreWriteError && e.code === 'ENOSPC' && /no space left on device \(ENOSPC\)/.test(e.message));
    assert.deepEqual(await namesIn(path.join(root, 'entries')), []);
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
  });

  it('a writer that creates a name the store reserves is refused', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const o = origin();
    await assert.rejects(store.put(o.key, filesWriter({ 'entry.json': '{}' }), o), /entry\.json, a name the store reserves/);
    assert.deepEqual(await namesIn(path.join(root, 'entries')), []);
  });

  it('a writer killed with SIGKILL mid-export leaves scratch that is never listed and is removed on the next open', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const o = origin();
    const child = await runStoreChild(
      `const s = await store.ModelStore.open(args[0]);
       await s.put(args[1], async (dir) => {
         const fs = await import('node:fs/promises');
         await fs.writeFile(dir + '/model.safetensors', new Uint8Array(1 << 20));
         process.kill(process.pid, 'SIGKILL');
         await new Promise(() => {});
       }, JSON.parse(args[2]));`,
      [root, o.key, JSON.stringify({ sourceDigest: o.sourceDigest, recipe: o.recipe })],
    );
    assert.equal(child.signal, 'SIGKILL', child.stderr);
    assert.equal((await namesIn(path.join(root, 'tmp'))).length, 1, 'the killed writer left its scratch');
    assert.deepEqual(await store.list(), []);
    assert.equal(await store.get(o.key), undefined);
    await ModelStore.open(root);
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
  });

  it('a writer killed with SIGKILL at a random instant of a stream of puts leaves only whole entries', async (t) => {
    const root = await tempDir(t);
    await ModelStore.open(root);
    const o = origin();
    const child = spawnStoreChild(
      `const s = await store.ModelStore.open(args[0]);
       const fs = await import('node:fs/promises');
       const base = JSON.parse(args[1]);
       for (let i = 0; ; i++) {
         const recipe = { ...base.recipe, seed: i };
         await s.put(store.storeKey(base.sourceDigest, recipe), async (dir) => {
           await fs.writeFile(dir + '/model.safetensors', new Uint8Array(256 * 1024).fill(i & 255));
           await fs.writeFile(dir + '/config.json', JSON.stringify({ i }));
         }, { sourceDigest: base.sourceDigest, recipe });
       }`,
      [root, JSON.stringify({ sourceDigest: o.sourceDigest, recipe: o.recipe })],
    );
    await until(async () => (await namesIn(path.join(root, 'entries'))).length > 0, 20_000, 'the first entry');
    await new Promise((r) => setTimeout(r, 50 + Math.random() * 200));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    const reopened = await ModelStore.open(root);
    const entries = await reopened.list();
    assert.ok(entries.length > 0);
    for (const e of entries) {
      assert.equal(e.problem, null, e.key);
      assert.equal((await reopened.verify(e.key, { contents: true })).ok, true, e.key);
    }
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
    t.diagnostic(`killed after ${entries.length} entries`);
  });

  it('open removes abandoned scratch (dead pid here, same pid not in use, stale elsewhere, trash) and keeps live scratch of other hosts', async (t) => {
    const root = await tempDir(t);
    await ModelStore.open(root);
    const key = origin().key;
    const tmp = path.join(root, 'tmp');
    const exited = await runStoreChild('process.stdout.write(String(process.pid));');
    const deadPid = Number(exited.stdout);
    const scratch = {
      deadHere: `${key}.${ownerId}.${deadPid}.aaaaaa`,
      samePidNotInUse: `${key}.${ownerId}.${process.pid}.bbbbbb`,
      staleElsewhere: `${key}.other-host.42.cccccc`,
      freshElsewhere: `${key}.other-host.43.dddddd`,
      staleUnparsable: `leftover`,
    };
    for (const name of Object.values(scratch)) {
      await fs.mkdir(path.join(tmp, name));
      await fs.writeFile(path.join(tmp, name, 'model.safetensors'), 'partial');
    }
    const sevenHoursAgo = new Date(Date.now() - 7 * 3600_000);
    for (const name of [scratch.staleElsewhere, scratch.staleUnparsable]) {
      await fs.utimes(path.join(tmp, name, 'model.safetensors'), sevenHoursAgo, sevenHoursAgo);
      await fs.utimes(path.join(tmp, name), sevenHoursAgo, sevenHoursAgo);
    }
    await fs.mkdir(path.join(root, 'trash', `${key}.other-host.44.eeeeee`));
    await ModelStore.open(root);
    assert.deepEqual(await namesIn(tmp), [scratch.freshElsewhere]);
    assert.deepEqual(await namesIn(path.join(root, 'trash')), []);
  });

  it('verify names a truncated file and get refuses the entry with EntryInvalidError naming it', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const o = origin();
    const { dir } = await store.put(o.key, filesWriter(sampleFiles), o);
    const weightsFile = path.join(dir, 'model.safetensors');
    await fs.truncate(weightsFile, 100);
    const result = await store.verify(o.key);
    assert.equal(result.ok, false);
    assert.ok(!result.ok);
    assert.equal(result.file, weightsFile);
    assert.match(result.reason, /model\.safetensors is 100 bytes, entry\.json records 4096 \(truncated/);
    await assert.rejects(store.get(o.key), (e: unknown) => e instanceof EntryInvalidError && e.file === weightsFile && e.message.includes(weightsFile));
    assert.equal(store.counters().invalid, 1);
  });

  it('verify with contents catches a same-size change to a file', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const o = origin();
    const { dir } = await store.put(o.key, filesWriter(sampleFiles), o);
    await fs.writeFile(path.join(dir, 'config.json'), '{"layers": 4}\n');
    assert.equal((await store.verify(o.key)).ok, true, 'sizes alone cannot see it');
    const deep = await store.verify(o.key, { contents: true });
    assert.ok(!deep.ok);
    assert.equal(deep.file, path.join(dir, 'config.json'));
    assert.match(deep.reason, /content changed/);
  });

  it('an entry without entry.json or with a missing file is reported naming that file', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const a = origin(1);
    const b = origin(2);
    const entryA = await store.put(a.key, filesWriter(sampleFiles), a);
    const entryB = await store.put(b.key, filesWriter(sampleFiles), b);
    await fs.rm(path.join(entryA.dir, 'entry.json'));
    await fs.rm(path.join(entryB.dir, 'report.json'));
    const va = await store.verify(a.key);
    const vb = await store.verify(b.key);
    assert.ok(!va.ok && !vb.ok);
    assert.match(va.reason, /entry\.json is missing/);
    assert.match(vb.reason, /report\.json is missing/);
  });

  it('put replaces a damaged entry with a sound one', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const o = origin();
    const { dir } = await store.put(o.key, filesWriter(sampleFiles), o);
    await fs.truncate(path.join(dir, 'model.safetensors'), 10);
    const again = await store.put(o.key, filesWriter(sampleFiles), o);
    assert.equal(again.outcome, 'written');
    assert.equal((await store.verify(o.key, { contents: true })).ok, true);
  });

  it('put rewrites an entry whose content changed after it was written, even at the same size', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const o = origin();
    const { dir } = await store.put(o.key, filesWriter(sampleFiles), o);
    await fs.writeFile(path.join(dir, 'model.safetensors'), new Uint8Array(4096).fill(8));
    let ran = false;
    const again = await store.put(o.key, async (d) => ((ran = true), filesWriter(sampleFiles)(d)), o);
    assert.equal(again.outcome, 'written');
    assert.equal(ran, true);
    assert.equal((await store.verify(o.key, { contents: true })).ok, true);
  });

  it('verify with contents reports a file entry.json does not list, and a symlink in place of a listed file', async (t) => {
    const store = await ModelStore.open(await tempDir(t));
    const a = origin(1);
    const b = origin(2);
    const entryA = await store.put(a.key, filesWriter(sampleFiles), a);
    const entryB = await store.put(b.key, filesWriter(sampleFiles), b);
    await fs.writeFile(path.join(entryA.dir, 'model.safetensors.index.json'), '{}');
    const va = await store.verify(a.key, { contents: true });
    assert.ok(!va.ok);
    assert.equal(va.file, path.join(entryA.dir, 'model.safetensors.index.json'));
    assert.match(va.reason, /is not listed in entry\.json \(added after the entry was written\)/);
    const elsewhere = path.join(await tempDir(t), 'weights');
    await fs.copyFile(path.join(entryB.dir, 'model.safetensors'), elsewhere);
    await fs.rm(path.join(entryB.dir, 'model.safetensors'));
    await fs.symlink(elsewhere, path.join(entryB.dir, 'model.safetensors'));
    const vb = await store.verify(b.key);
    assert.ok(!vb.ok);
    assert.match(vb.reason, /model\.safetensors is not a regular file/);
  });

  it('a store path below a regular file fails to open with a clear error', async (t) => {
    const dir = await tempDir(t);
    await fs.writeFile(path.join(dir, 'file'), '');
    await assert.rejects(ModelStore.open(path.join(dir, 'file', 'store')), (e: unknown) => e instanceof StoreWriteError && e.code === 'ENOTDIR' && /cannot open model store/.test(e.message));
  });

  it('a read-only store makes put fail with a clear error and leaves nothing', async (t) => {
    const parent = await tempDir(t);
    await fs.chmod(parent, 0o755);
    const root = path.join(parent, 'store');
    await ModelStore.open(root);
    for (const d of ['', 'entries', 'tmp', 'trash']) await fs.chmod(path.join(root, d), 0o555);
    t.after(async () => {
      for (const d of ['', 'entries', 'tmp', 'trash']) await fs.chmod(path.join(root, d), 0o755).catch(() => undefined);
    });
    // Root ignores permission bits: then the put runs as an unprivileged user, to whom 0555 is read-only.
    const probe = path.join(root, 'tmp', 'probe');
    const bitsBind = await fs.writeFile(probe, '').then(
      async () => (await fs.rm(probe), false),
      () => true,
    );
    const asUser = bitsBind ? {} : { uid: 65534, gid: 65534 };
    const canRun = await runStoreChild(`console.log(typeof store.ModelStore)`, [], asUser);
    if (canRun.code !== 0) return t.skip(`cannot run the store as uid 65534 here (are the sources readable to it?): ${canRun.stderr.slice(0, 200)}`);
    const o = origin();
    const child = await runStoreChild(
      `const s = await store.ModelStore.open(args[0]);
       try { await s.put(args[1], async (dir) => { throw new Error('writer must not run'); }, JSON.parse(args[2])); console.log(JSON.stringify({ ok: true })); }
       catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }`,
      [root, o.key, JSON.stringify({ sourceDigest: o.sourceDigest, recipe: o.recipe })],
      asUser,
    );
    assert.equal(child.code, 0, child.stderr);
    const outcome = JSON.parse(child.stdout);
    assert.equal(outcome.name, 'StoreWriteError');
    assert.equal(outcome.code, 'EACCES');
    assert.match(outcome.message, new RegExp(`cannot write to model store ${root}: permission denied \\(EACCES\\)`));
    assert.deepEqual(await namesIn(path.join(root, 'entries')), []);
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
  });

  it('two concurrent puts of one key in one process publish exactly one entry', async (t) => {
    const root = await tempDir(t);
    const store = await ModelStore.open(root);
    const o = origin();
    let started = 0;
    const bothStarted = async (dir: string) => {
      started++;
      while (started < 2) await new Promise((r) => setTimeout(r, 5));
      await filesWriter(sampleFiles)(dir);
    };
    const results = await Promise.all([store.put(o.key, bothStarted, o), store.put(o.key, bothStarted, o)]);
    assert.deepEqual(results.map((r) => r.outcome).sort(), ['hit', 'written']);
    assert.deepEqual(await namesIn(path.join(root, 'entries')), [o.key]);
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
    assert.equal((await store.verify(o.key, { contents: true })).ok, true);
  });

  it('two processes putting one key at the same time publish exactly one entry', async (t) => {
    const root = await tempDir(t);
    const rendezvous = await tempDir(t, 'mop-store-sync-');
    await ModelStore.open(root);
    const o = origin();
    const body = `const fs = await import('node:fs/promises');
      const s = await store.ModelStore.open(args[0]);
      const r = await s.put(args[1], async (dir) => {
        await fs.writeFile(args[3] + '/' + process.pid, '');
        while ((await fs.readdir(args[3])).length < 2) await new Promise((r) => setTimeout(r, 10));
        await fs.writeFile(dir + '/model.safetensors', new Uint8Array(1 << 16).fill(3));
        await fs.writeFile(dir + '/config.json', '{}');
      }, JSON.parse(args[2]));
      console.log(r.outcome);`;
    const args = [root, o.key, JSON.stringify({ sourceDigest: o.sourceDigest, recipe: o.recipe }), rendezvous];
    const children = await Promise.all([runStoreChild(body, args), runStoreChild(body, args)]);
    for (const c of children) assert.equal(c.code, 0, c.stderr);
    assert.deepEqual(children.map((c) => c.stdout.trim()).sort(), ['hit', 'written']);
    assert.deepEqual(await namesIn(path.join(root, 'entries')), [o.key]);
    assert.deepEqual(await namesIn(path.join(root, 'tmp')), []);
    const store = await ModelStore.open(root);
    assert.equal((await store.verify(o.key, { contents: true })).ok, true);
  });
});
