import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/**
 * Give the calling thread (and the threads it starts afterwards, such as ONNX Runtime's
 * intra-op pool, which inherit it) a nice value, so background work like a prune loses CPU
 * contention to serving and health checks instead of sharing it equally. Linux only: there a
 * thread is a task with its own nice value, and /proc/thread-self names it. Returns what was
 * done, for the log; never throws (raising niceness needs no privilege, lowering it does).
 */
export function niceCurrentThread(nice: number): string {
  if (nice === 0) return 'normal priority';
  if (process.platform !== 'linux') return `normal priority (thread niceness is set on Linux only)`;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return 'normal priority (no thread id)';
    setPriority(tid, nice);
    return `nice ${nice}`;
  } catch (e) {
    return `normal priority (${e instanceof Error ? e.message : String(e)})`;
  }
}
