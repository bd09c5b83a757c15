/**
 * PruneJobs' bookkeeping, without a worker: a job whose store entry is already served needs no
 * prune, only the manifest record, which is where a status read too early used to show up.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cpuTarget } from '../../src/runtime/device/device.ts';
import type { EngineVariant } from '../../src/service/variants/engine-variant.ts';
import type { HexDigest } from '../../src/service/model-store/index.ts';
import type { PruneJobRequest } from '../../src/service/prune/prune-job-view.ts';
import { type PruneJobStore, PruneJobs } from '../../src/service/prune/prune-jobs.ts';
import { defaultPruneSettings } from '../../src/service/prune/prune-options.ts';
import { bundled } from '../mop/helpers.ts';
import { sha256 } from './model-store-helpers.ts';
import { waitForPruneJobs } from '../server/helpers/prune-jobs.ts';

/** A store in which every key is already served by `mop-30`; its manifest writes wait for `release`. */
function servedStore(): { store: PruneJobStore; records: string[]; release: () => void } {
  let release!: () => void;
  const written = new Promise<void>((r) => (release = r));
  const records: string[] = [];
  const store: PruneJobStore = {
    root: '/nonexistent',
    sourceDigest: () => sha256('source') as HexDigest,
    variantWithKey: () => 'mop-30',
    find: async () => undefined,
    load: () => Promise.reject(new Error('not used')),
    recordAdded: async (id) => {
      await written;
      records.push(id);
    },
  };
  return { store, records, release };
}

describe('prune jobs', () => {
  it('an entry already served starts no prune worker; the job reads as running until its manifest record is written, and the next may start the moment it reads as finished', async () => {
    const { model } = await bundled();
    const dense = { id: 'stories260K', model, target: cpuTarget } as unknown as EngineVariant;
    const { store, records, release } = servedStore();
    const activated: string[] = [];
    let workersStarted = 0;
    const jobs = new PruneJobs({
      registry: { get: (id) => (id === dense.id ? dense : undefined), has: (id) => id === dense.id || id === 'mop-30' },
      publish: () => undefined,
      metrics: () => undefined,
      log: () => undefined,
      denseId: dense.id,
      pruneThreads: undefined,
      pruneHeapMb: undefined,
      pruneNice: 0,
      addVariant: () => Promise.reject(new Error('nothing is pruned here')),
      activate: (id) => activated.push(id),
      store: () => store,
      startWorker: () => {
        workersStarted++;
        throw new Error('an entry already served needs no prune worker');
      },
    });
    const request: PruneJobRequest = { ...defaultPruneSettings(), target: 0.3, activate: true };

    const first = await jobs.start(request);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(jobs.get(first.id)?.status, 'running', 'the manifest is not written yet');
    await assert.rejects(jobs.start(request), /still running/);

    release();
    await waitForPruneJobs(jobs);
    assert.equal(jobs.get(first.id)?.status, 'succeeded');
    assert.deepEqual(records, ['mop-30']);
    assert.deepEqual(activated, ['mop-30']);
    const second = await jobs.start(request);
    await waitForPruneJobs(jobs);
    assert.equal(jobs.get(second.id)?.status, 'succeeded');
    assert.equal(jobs.get(second.id)?.fromStore, true);
    assert.equal(workersStarted, 0);
  });
});
