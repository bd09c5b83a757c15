import assert from 'node:assert/strict';
import { getPriority } from 'node:os';
import { describe, it } from 'node:test';
import { niceCurrentThread } from '../../src/service/threads/thread-priority.ts';
import { startWorkerThread } from '../../src/runtime/threads/worker-thread.ts';

describe('niceCurrentThread (the prune worker renices itself)', { skip: process.platform !== 'linux' && 'thread niceness is Linux only' }, () => {
  it('lowers the priority of the calling thread and the threads it starts after, not the process', async () => {
    const before = getPriority(process.pid);
    const w = startWorkerThread(new URL('./helpers/nice-worker.ts', import.meta.url));
    const seen = await new Promise<unknown>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    assert.deepEqual(seen, { said: 'nice 7', own: 7, inherited: 7 });
    assert.equal(getPriority(process.pid), before, 'the main thread keeps its priority');
  });

  it('leaves the thread alone for nice 0', () => {
    assert.equal(niceCurrentThread(0), 'normal priority');
    assert.equal(getPriority(0), getPriority(process.pid));
  });
});
