/**
 * PruneJobs under faults, with injected workers: a worker that never reads its calibration, one
 * that never answers a cancel, input files that would block a reader forever, and a long run of
 * jobs whose history must not grow without bound.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { CalibrationDescription } from '../../src/mop/calibration.ts';
import { cpuTarget } from '../../src/runtime/device/device.ts';
import type { EngineVariant } from '../../src/service/variants/engine-variant.ts';
import type { PruneJobRequest, PruneJobView } from '../../src/service/prune/prune-job-view.ts';
import { type PruneJobsDeps, PruneJobs, PruneWorkerError } from '../../src/service/prune/prune-jobs.ts';
import { PruneFileError } from '../../src/service/prune/prune-input-files.ts';
import { defaultPruneSettings } from '../../src/service/prune/prune-options.ts';
import type { PrunedModel, PruneWorkerHandle } from '../../src/service/prune/prune-worker-client.ts';
import { bundled } from '../mop/helpers.ts';
import { tempDir } from './model-store-helpers.ts';
import { waitForPruneJobs } from '../server/helpers/prune-jobs.ts';

const request: PruneJobRequest = { ...defaultPruneSettings(), target: 0.3, activate: false };
const never = <T>() => new Promise<T>(() => undefined);

/** A worker as injected: `calibrates` says whether it ever reads its inputs; it never answers a cancel, nor exits. */
function fakeWorker(o: { calibrates: boolean; result?: PrunedModel }): PruneWorkerHandle & { cancels: number; detached: boolean } {
  const w = {
    cancels: 0,
    detached: false,
    calibrated: o.calibrates ? Promise.resolve({ source: 'fake', samples: 1, seqLen: 2, seed: 0, textTokens: 2 }) : never<CalibrationDescription>(),
    result: o.result ? Promise.resolve(o.result) : never<PrunedModel>(),
    exited: never<void>(),
    cancel: () => {
      w.cancels++;
    },
    detach: () => {
      w.detached = true;
    },
  };
  return w;
}

const pruned = (): PrunedModel => ({ spec: {}, weights: {}, report: { steps: [], result: { ratio: 0.3, steps: { depth: 0, width: 0 } } } }) as unknown as PrunedModel;

async function jobsWith(workers: PruneWorkerHandle[], deps: Partial<PruneJobsDeps> = {}): Promise<{ jobs: PruneJobs; log: string[] }> {
  const { model } = await bundled();
  const dense = { id: 'stories260K', model, target: cpuTarget } as unknown as EngineVariant;
  const log: string[] = [];
  const added = new Set<string>();
  const jobs = new PruneJobs({
    registry: { get: (id) => (id === dense.id ? dense : undefined), has: (id) => id === dense.id || added.has(id) },
    publish: () => undefined,
    metrics: () => undefined,
    log: (line) => log.push(line),
    denseId: dense.id,
    pruneThreads: undefined,
    pruneHeapMb: undefined,
    pruneNice: 0,
    addVariant: async (id) => (added.add(id), { id } as EngineVariant),
    activate: () => undefined,
    startWorker: () => {
      const w = workers.shift();
      if (!w) throw new Error('no more fake workers');
      return w;
    },
    ...deps,
  });
  return { jobs, log };
}

/** `p`, or a failed assertion after `ms` (a regression hangs instead of failing otherwise). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitForJob(jobs: PruneJobs, ms = 5000): Promise<PruneJobView> {
  const until = Date.now() + ms;
  for (;;) {
    const [job] = jobs.list();
    if (job) return job;
    if (Date.now() > until) assert.fail('the job was not listed while it started');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function fifo(t: TestContext): Promise<string> {
  const dir = await tempDir(t, 'mop-prune-fifo-');
  const p = path.join(dir, 'calibration.fifo');
  execFileSync('mkfifo', [p]);
  return p;
}

describe('prune jobs under faults', () => {
  it('a job whose worker never reads its calibration is listed at once, can be cancelled, and frees the slot', async () => {
    const stuck = fakeWorker({ calibrates: false });
    const next = fakeWorker({ calibrates: true });
    const { jobs } = await jobsWith([stuck, next]);
    const starting = jobs.start(request);
    const listed = await waitForJob(jobs);
    assert.equal(listed.status, 'running');
    assert.equal(jobs.get(listed.id)?.status, 'running');

    const cancelled = await within(jobs.cancel(listed.id), 5000, 'cancel of a job that is still starting');
    assert.equal(cancelled?.status, 'cancelled');
    assert.equal((await within(starting, 5000, 'the start of a cancelled job')).status, 'cancelled');
    assert.ok(stuck.cancels >= 1, 'its worker was asked to stop');

    const second = await within(jobs.start(request), 5000, 'the next start');
    assert.equal(second.status, 'running');
    await jobs.cancel(second.id);
  });

  it('a worker that does not read its calibration within the bound fails the job with the reason, is asked to stop, and frees the slot', async () => {
    const stuck = fakeWorker({ calibrates: false });
    const next = fakeWorker({ calibrates: true });
    const { jobs } = await jobsWith([stuck, next], { calibratedTimeoutMs: 100 });
    await assert.rejects(within(jobs.start(request), 5000, 'a start whose worker never calibrates'), (e: unknown) => e instanceof PruneWorkerError && /did not read its calibration and recovery text within 0\.1 s/.test(e.message));
    const [failed] = jobs.list();
    assert.equal(failed?.status, 'failed');
    assert.match(failed?.error ?? '', /did not read its calibration/);
    assert.ok(stuck.cancels >= 1);
    const second = await jobs.start(request);
    assert.equal(second.status, 'running');
    await jobs.cancel(second.id);
  });

  it('/dev/zero and a FIFO as calibration or recovery data are refused at once, naming the field, and the next prune starts', async (t) => {
    const pipe = await fifo(t);
    const { jobs } = await jobsWith([fakeWorker({ calibrates: true })]);
    const cases: [Partial<PruneJobRequest>, string, RegExp][] = [
      [{ calibration: '/dev/zero' }, 'calibration', /calibration file \/dev\/zero: a character device; a regular text file is needed/],
      [{ calibration: pipe }, 'calibration', /calibration file .*calibration\.fifo: a FIFO \(named pipe\); a regular text file is needed/],
      [{ recoveryData: pipe }, 'recovery_data', /recovery-data file .*: a FIFO/],
      [{ calibration: path.dirname(pipe) }, 'calibration', /a directory; a regular text file is needed/],
    ];
    for (const [fields, field, message] of cases) {
      await assert.rejects(within(jobs.start({ ...request, ...fields }), 5000, JSON.stringify(fields)), (e: unknown) => e instanceof PruneFileError && e.field === field && message.test(e.message));
    }
    assert.deepEqual(jobs.list(), [], 'a refused request keeps no job');
    assert.equal(jobs.forgotten('prune-1'), true);
    const next = await jobs.start(request);
    assert.equal(next.status, 'running');
    await jobs.cancel(next.id);
  });

  it('an input file over the size cap is refused before anything reads it', async () => {
    const { jobs } = await jobsWith([], { inputFiles: { maxBytes: 1024 } });
    const calibration = path.resolve('data/tinystories-calibration.txt');
    await assert.rejects(jobs.start({ ...request, calibration }), (e: unknown) => e instanceof PruneFileError && e.field === 'calibration' && /MiB; at most 0\.0009765625 MiB/.test(e.message));
  });

  it('shutdown cancels the running prune and resolves within its grace even when the worker never answers the cancel', async () => {
    const deaf = fakeWorker({ calibrates: true });
    const { jobs, log } = await jobsWith([deaf]);
    const job = await jobs.start(request);
    const t0 = performance.now();
    await within(jobs.close(200), 10_000, 'close(200) with a worker that never stops');
    assert.ok(performance.now() - t0 < 10_000);
    assert.ok(deaf.cancels >= 1, 'the worker was asked to stop');
    assert.equal(deaf.detached, true, 'the process no longer waits for it');
    assert.equal(jobs.get(job.id)?.status, 'cancelled');
    assert.ok(log.some((l) => /did not stop within 200 ms/.test(l)), log.join('\n'));
    await assert.rejects(jobs.start(request), /shutting down/);
  });

  it('keeps at most maxJobHistory finished jobs, oldest dropped first, and says which ids it forgot', async () => {
    const workers = Array.from({ length: 4 }, () => fakeWorker({ calibrates: true, result: pruned() }));
    const { jobs } = await jobsWith(workers, { maxJobHistory: 2 });
    for (let i = 0; i < 4; i++) {
      await jobs.start(request);
      await waitForPruneJobs(jobs);
    }
    assert.deepEqual(
      jobs.list().map((j) => [j.id, j.status]),
      [
        ['prune-3', 'succeeded'],
        ['prune-4', 'succeeded'],
      ],
    );
    assert.equal(jobs.get('prune-1'), undefined);
    assert.equal(jobs.forgotten('prune-1'), true);
    assert.equal(jobs.forgotten('prune-2'), true);
    assert.equal(jobs.forgotten('prune-3'), false, 'still kept');
    assert.equal(jobs.forgotten('prune-5'), false, 'never existed');
    assert.equal(jobs.forgotten('nope'), false);
  });

  it('the running job is kept however small the history', async () => {
    const workers = [fakeWorker({ calibrates: true, result: pruned() }), fakeWorker({ calibrates: true })];
    const { jobs } = await jobsWith(workers, { maxJobHistory: 1 });
    await jobs.start(request);
    await waitForPruneJobs(jobs);
    const running = await jobs.start(request);
    assert.deepEqual(
      jobs.list().map((j) => [j.id, j.status]),
      [
        ['prune-1', 'succeeded'],
        ['prune-2', 'running'],
      ],
    );
    await jobs.cancel(running.id);
    assert.deepEqual(
      jobs.list().map((j) => j.id),
      ['prune-2'],
    );
  });
});
