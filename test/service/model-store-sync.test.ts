/**
 * StoreSync (the server's side of the model store) against a real store directory and a fake
 * serving side that records what it is asked to do: id conflicts with another replica's manifest,
 * manifest writes that fail, and eviction of entries served here.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { writePrunedModel } from '../../src/mop/export.ts';
import type { ModelSpec } from '../../src/runtime/model/spec.ts';
import { syntheticSpec, syntheticVocabulary, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { digestWeights, type ManifestSplit, type ManifestState, ModelStore, StoreWriteError, storeKey } from '../../src/service/model-store/index.ts';
import type { StoredModel } from '../../src/service/store-sync/stored-model-io.ts';
import type { StoreServing } from '../../src/service/store-sync/store-serving.ts';
import { StoreSync, type StoreSyncOptions } from '../../src/service/store-sync/store-sync.ts';
import { namesIn, recipe, tempDir, until } from './model-store-helpers.ts';

const spec: ModelSpec = syntheticSpec({ vocabSize: 64, hidden: 16, layers: 1, heads: 2, kvHeads: 1, ffn: 24, maxContext: 64 });
const dense = { spec, weights: syntheticWeights(spec, 3) as Weights };
const denseDigest = digestWeights(dense.spec, dense.weights);

/** A real entry pruned "from" the dense model (its weights are the dense ones: only loading matters here). */
async function putEntry(store: ModelStore, seed: number): Promise<string> {
  const r = recipe({ seed });
  const key = storeKey(denseDigest, r);
  await store.put(key, (dir) => writePrunedModel(dir, dense, { tokenizer: syntheticVocabulary(64) }), { sourceDigest: denseDigest, recipe: r });
  return key;
}

/** The serving side, in memory: it records every call; `onHas` may change what `has` answers. */
class FakeServing implements StoreServing {
  readonly denseId = 'dense';
  readonly served = new Set<string>(['dense']);
  readonly added: string[] = [];
  readonly unloaded: string[] = [];
  active = 'dense';
  current: ManifestSplit | undefined;
  onHas: ((id: string) => void) | undefined;
  has(id: string): boolean {
    this.onHas?.(id);
    return this.served.has(id);
  }
  activeId(): string {
    return this.active;
  }
  isServing(id: string): boolean {
    return this.served.has(id);
  }
  split(): ManifestSplit | undefined {
    return this.current;
  }
  async addStored(id: string, _stored: StoredModel): Promise<void> {
    this.added.push(id);
    // The registry refuses a second variant of an id; the engine started for it would leak.
    if (this.served.has(id)) throw new Error(`a model variant '${id}' already exists`);
    this.served.add(id);
  }
  applyActive(id: string): void {
    this.active = id;
  }
  applySplit(split: ManifestSplit | undefined): void {
    this.current = split;
  }
  async unloadLocal(id: string): Promise<void> {
    this.unloaded.push(id);
    this.served.delete(id);
  }
}

interface Harness {
  root: string;
  vs: StoreSync;
  serving: FakeServing;
  lines: string[];
  /** Another replica's handle on the same directory. */
  other: ModelStore;
}

/**
 * `setUp` runs before the StoreSync starts and may return options for it; `ref.vs` is set once
 * it is open (for hooks that run during start).
 */
async function startStoreSync(
  t: TestContext,
  setUp: (h: { root: string; other: ModelStore; serving: FakeServing; ref: { vs?: StoreSync } }) => Promise<Partial<StoreSyncOptions> | void> = async () => {},
): Promise<Harness> {
  const root = await tempDir(t);
  const other = await ModelStore.open(root, { writerName: 'other-replica' });
  const serving = new FakeServing();
  const ref: { vs?: StoreSync } = {};
  const options = (await setUp({ root, other, serving, ref })) ?? {};
  const lines: string[] = [];
  const vs = await StoreSync.open({ root, maxBytes: undefined, pollMs: 50, log: (l) => lines.push(l), ...options });
  ref.vs = vs;
  t.after(() => vs.stop());
  await vs.start(serving, dense);
  return { root, vs, serving, lines, other };
}

const state = (variants: { id: string; key: string }[], active: string | null = null): ManifestState => ({ variants, active, split: null });

describe('a manifest variant whose id is served here', () => {
  it('is not added when the id was taken while its entry loaded: one log line says the conflict and which one is kept', async (t) => {
    let key = '';
    const h = await startStoreSync(t, async ({ other, serving }) => {
      key = await putEntry(other, 1);
      await other.writeManifest(state([{ id: 'mop-30', key }]));
      // A prune here with the explicit id 'mop-30' registers it while the store loads the entry.
      let asked = 0;
      serving.onHas = (id) => {
        if (id === 'mop-30' && ++asked === 2) serving.served.add('mop-30');
      };
    });
    assert.deepEqual(h.serving.added, [], 'no second engine was started for the id');
    const conflicts = h.lines.filter((l) => l.includes("'mop-30'"));
    assert.equal(conflicts.length, 1, h.lines.join('\n'));
    assert.match(conflicts[0]!, new RegExp(`manifest variant 'mop-30' \\(entry ${key}\\) has the id of a variant served here .*keeping the one served here`));
  });

  it('is reported as the conflict, not as a failed load, when the id was registered while its engine started', async (t) => {
    let key = '';
    const h = await startStoreSync(t, async ({ other, serving }) => {
      key = await putEntry(other, 1);
      await other.writeManifest(state([{ id: 'mop-30', key }]));
      // The service refuses the second registration (the prune here got the id first).
      serving.addStored = async (id) => {
        serving.added.push(id);
        serving.served.add(id);
        throw new Error(`a model variant '${id}' is already served (or starting); choose another id`);
      };
    });
    const about = h.lines.filter((l) => l.includes("'mop-30'"));
    assert.equal(about.length, 1, h.lines.join('\n'));
    assert.match(about[0]!, /has the id of a variant served here .*keeping the one served here/);
    assert.equal((await h.vs.usage()).errors.load, 0);
  });

  it('under the same entry is nothing to do, and nothing is logged', async (t) => {
    let key = '';
    const h = await startStoreSync(t, async ({ other, serving, ref }) => {
      key = await putEntry(other, 1);
      await other.writeManifest(state([{ id: 'mop-30', key }]));
      let asked = 0;
      serving.onHas = (id) => {
        if (id !== 'mop-30' || ++asked !== 2) return;
        // The prune here finished first with the same recipe: same id, same entry.
        serving.served.add('mop-30');
        void ref.vs!.recordAdded('mop-30', key, false);
      };
    });
    assert.deepEqual(h.serving.added, []);
    assert.ok(!h.lines.some((l) => /has the id of a variant served here/.test(l)), h.lines.join('\n'));
  });

  it('under another entry is logged once, however often the manifest changes', async (t) => {
    const h = await startStoreSync(t, async ({ serving }) => void serving.served.add('mop-30'));
    const key = await putEntry(h.other, 2);
    for (const active of ['dense', null, 'dense']) {
      await h.other.writeManifest(state([{ id: 'mop-30', key }], active));
      await new Promise((r) => setTimeout(r, 200)); // a few polls
    }
    const conflicts = h.lines.filter((l) => /has the id of a variant served here/.test(l));
    assert.equal(conflicts.length, 1, h.lines.join('\n'));
    assert.match(conflicts[0]!, /\(no store entry recorded for it\); keeping the one served here/);
    assert.deepEqual(h.serving.added, []);
  });
});


/** A store handle whose manifest writes fail while `failing.on` (as on a full or read-only volume). */
async function storeWithFailingWrites(root: string): Promise<{ store: ModelStore; failing: { on: boolean } }> {
  const store = await ModelStore.open(root, { cleanOnOpen: false });
  const failing = { on: false };
  const write = store.writeManifest.bind(store);
  store.writeManifest = async (s) => {
    if (failing.on) throw new StoreWriteError(`cannot write ${root}/manifest.json: no space left on device (ENOSPC)`, 'ENOSPC');
    return write(s);
  };
  return { store, failing };
}

describe('a manifest write that fails', () => {
  it('keeps the change: another replica’s manifest change does not unload the variant, and the change is recorded once writes work again', async (t) => {
    let failing = { on: false };
    const h = await startStoreSync(t, async ({ root }) => {
      const injected = await storeWithFailingWrites(root);
      failing = injected.failing;
      return { store: injected.store };
    });
    const key = await putEntry(h.other, 1);
    // A prune here finished: its variant serves, and its manifest record fails.
    h.serving.served.add('mop-30');
    failing.on = true;
    await h.vs.recordAdded('mop-30', key, false);

    // Another replica changes the manifest, which does not list mop-30.
    await h.other.writeManifest({ variants: [], active: 'dense', split: { variant: 'dense', share: 0.25 } });
    await until(() => h.serving.current?.variant === 'dense', 5000, 'the other replica’s split to be applied');
    await new Promise((r) => setTimeout(r, 200)); // a few more polls and retries
    assert.deepEqual(h.serving.unloaded, [], 'the variant whose record failed was not unloaded');
    assert.ok(h.serving.served.has('mop-30'));

    const complaint = h.lines.filter((l) => /could not record 'add 'mop-30'' in the manifest/.test(l));
    assert.equal(complaint.length, 1, h.lines.join('\n'));
    assert.match(complaint[0]!, /no space left on device \(ENOSPC\).*applies on this replica only until a retry/);
    assert.ok((await h.vs.usage()).errors.manifest_write >= 2, 'the first write and its retries are counted');
    assert.match(h.vs.unrecorded() ?? '', /could not be written .*add 'mop-30' applies on this replica only/);

    failing.on = false;
    await until(async () => ((await h.other.readManifest()).manifest?.variants ?? []).some((v) => v.id === 'mop-30'), 5000, 'the pending change to be written');
    const { manifest } = await h.other.readManifest();
    assert.deepEqual(manifest!.variants, [{ id: 'mop-30', key }]);
    assert.deepEqual(manifest!.split, { variant: 'dense', share: 0.25 }, 'the other replica’s change is kept');
    assert.equal(h.vs.unrecorded(), undefined);
    assert.ok(h.lines.some((l) => /the manifest is written again; recorded add 'mop-30'/.test(l)), h.lines.join('\n'));
  });

  it('a pending activation loses to a later activation by another replica; the pending add does not', async (t) => {
    let failing = { on: false };
    const h = await startStoreSync(t, async ({ root, other }) => {
      await other.writeManifest({ variants: [], active: 'dense', split: null });
      const injected = await storeWithFailingWrites(root);
      failing = injected.failing;
      return { store: injected.store };
    });
    const key = await putEntry(h.other, 1);
    h.serving.served.add('mop-30');
    h.serving.served.add('base');
    failing.on = true;
    await h.vs.recordAdded('mop-30', key, true);
    h.serving.active = 'mop-30';
    await h.other.writeManifest({ variants: [], active: 'base', split: null });
    await until(() => h.serving.active === 'base', 5000, 'the other replica’s activation');
    failing.on = false;
    await until(async () => ((await h.other.readManifest()).manifest?.variants ?? []).length === 1, 5000, 'the pending add to be written');
    const { manifest } = await h.other.readManifest();
    assert.equal(manifest!.active, 'base');
    assert.deepEqual(manifest!.variants, [{ id: 'mop-30', key }]);
  });

  it('does not let eviction delete the entry of a variant served here', async (t) => {
    let failing = { on: false };
    const h = await startStoreSync(t, async ({ root }) => {
      const injected = await storeWithFailingWrites(root);
      failing = injected.failing;
      return { store: injected.store, maxBytes: 1, evictGraceMs: 0 };
    });
    const key = await putEntry(h.other, 1);
    const unserved = await putEntry(h.other, 2);
    h.serving.served.add('mop-30');
    failing.on = true;
    await h.vs.recordAdded('mop-30', key, false);
    assert.deepEqual(await namesIn(path.join(h.root, 'entries')), [key], 'the unserved entry is evicted, the served one kept');
    assert.ok(h.lines.some((l) => l.includes(`evicted entry ${unserved}`)), h.lines.join('\n'));
  });

  it('a purge waits until the manifest records the removal, then deletes the entry', async (t) => {
    let failing = { on: false };
    const h = await startStoreSync(t, async ({ root, other }) => {
      const key = await putEntry(other, 1);
      await other.writeManifest(state([{ id: 'mop-30', key }]));
      const injected = await storeWithFailingWrites(root);
      failing = injected.failing;
      return { store: injected.store };
    });
    const key = h.vs.keyOf('mop-30')!;
    assert.ok(h.serving.served.has('mop-30'), 'restored from the manifest');
    await h.vs.checkPurge('mop-30');
    failing.on = true;
    await h.serving.unloadLocal('mop-30');
    assert.equal(await h.vs.recordRemoved('mop-30', true), false);
    assert.deepEqual(await namesIn(path.join(h.root, 'entries')), [key], 'kept while the manifest still lists mop-30');
    assert.match(h.vs.unrecorded() ?? '', /remove 'mop-30'/);
    failing.on = false;
    await until(async () => (await namesIn(path.join(h.root, 'entries'))).length === 0, 5000, 'the entry to be deleted once the removal is recorded');
    assert.deepEqual((await h.other.readManifest()).manifest!.variants, []);
  });
});
