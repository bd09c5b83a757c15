import type { Worker } from 'node:worker_threads';
import { siblingModule, startWorkerThread } from '../threads/worker-thread.ts';
import type { AdamWOptions, OptimizedTensor } from './adamw.ts';
import type { AdamWThreadInit, AdamWThreadReply, AdamWThreadRequest } from './adamw-thread.ts';
import { normOfSums } from './grad-clip.ts';
import { gradientOf, type StepOptimizer } from './step-optimizer.ts';

/**
 * AdamW and the gradient norm spread over worker threads (`adamw-thread.ts`), each owning the
 * moments and last good weights of a share of the tensors (largest first, to the least loaded
 * thread). On a 100M-parameter model the update and the norm read and write ~3 GB a step in
 * plain JavaScript; in one thread that is a second or more beside a graph run of under two.
 * Weights and gradients move between threads by transfer (no copy): from gradientNorm until
 * update or restoreLastGood the weights are in the workers and `params` must not be read; after,
 * each tensor's `data` is a new array over the same memory. Every element is updated by the same
 * arithmetic as InThreadAdamW, and the norm adds per-tensor sums in the same order, so both give
 * the same weights bit for bit.
 */
export type StartThread = (init: AdamWThreadInit) => Worker;

const startAdamWThread: StartThread = (init) => startWorkerThread(siblingModule(import.meta.url, 'adamw-thread'), { workerData: init });

interface Share {
  worker: Worker;
  names: string[];
  /** The call waiting for this thread's answer. */
  pending?: { resolve: (reply: AdamWThreadReply) => void; reject: (e: Error) => void; request: AdamWThreadRequest['kind'] };
}

export class ThreadedAdamW implements StepOptimizer {
  private t = 0;
  /** The weights are in the workers (between gradientNorm and update or restore). */
  private held = false;
  private failure: Error | undefined;
  private closing = false;
  private readonly shares: Share[] = [];

  private constructor(private readonly params: ReadonlyMap<string, OptimizedTensor>) {}

  /**
   * Start `threads` worker threads (fewer when there are fewer tensors) over `params`. A thread
   * that errs or exits, even between calls, fails the call in flight and every later one.
   */
  static start(params: ReadonlyMap<string, OptimizedTensor>, options: AdamWOptions, threads: number, startThread: StartThread = startAdamWThread): ThreadedAdamW {
    for (const p of params.values()) if (!ownsBuffer(p.data)) p.data = p.data.slice();
    const optimizer = new ThreadedAdamW(params);
    try {
      for (const names of partitionBySize([...params].map(([name, p]) => [name, p.data.length] as const), threads)) {
        const worker = startThread({ options, tensors: names.map((name) => ({ name, data: params.get(name)!.data, decay: params.get(name)!.decay })) });
        const share: Share = { worker, names };
        optimizer.shares.push(share);
        worker.on('message', (reply: AdamWThreadReply) => optimizer.answered(share, reply));
        worker.on('error', (e: Error) => optimizer.fail(new Error(`AdamW thread failed: ${e.message}`)));
        worker.on('exit', (code: number) => optimizer.closing || optimizer.fail(new Error(`AdamW thread exited (code ${code})${share.pending ? ` during ${share.pending.request}` : ''}`)));
      }
    } catch (e) {
      void optimizer.close();
      throw e;
    }
    return optimizer;
  }

  get steps(): number {
    return this.t;
  }

  async gradientNorm(grads: ReadonlyMap<string, Float32Array>): Promise<number> {
    if (this.held) throw new Error('gradientNorm twice without update or restore');
    const requests = this.shares.map((s) => {
      const weights = s.names.map((name) => this.params.get(name)!.data);
      const g = s.names.map((name) => own(gradientOf(grads, name)));
      return { weights, g };
    });
    this.held = true;
    const replies = await Promise.all(
      this.shares.map((s, k) => this.call(s, { kind: 'gradients', weights: requests[k]!.weights, grads: requests[k]!.g }, [...requests[k]!.weights, ...requests[k]!.g].map((a) => a.buffer as ArrayBuffer))),
    );
    const sums = new Map<string, number>();
    replies.forEach((r, k) => {
      if (r.kind !== 'sums') throw new Error(`AdamW thread answered '${r.kind}' to gradients`);
      this.shares[k]!.names.forEach((name, i) => sums.set(name, r.sums[i]!));
    });
    return normOfSums([...this.params.keys()].map((name) => sums.get(name)!));
  }

  async update(lr: number, gradScale: number): Promise<void> {
    if (!this.held) throw new Error('update without gradients: call gradientNorm first');
    this.t++;
    await this.takeBack({ kind: 'update', t: this.t, lr, gradScale });
  }

  async restoreLastGood(): Promise<void> {
    if (this.held) return this.takeBack({ kind: 'restore' });
    // The weights are here: they go to the threads to be overwritten with the last good ones.
    this.held = true;
    await Promise.all(
      this.shares.map((s) => {
        const weights = s.names.map((name) => this.params.get(name)!.data);
        return this.takeBackShare(s, { kind: 'restore', weights }, weights.map((w) => w.buffer as ArrayBuffer));
      }),
    );
    this.held = false;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.shares.map((s) => s.worker.terminate()));
  }

  private async takeBack(request: AdamWThreadRequest): Promise<void> {
    await Promise.all(this.shares.map((s) => this.takeBackShare(s, request, [])));
    this.held = false;
  }

  private async takeBackShare(s: Share, request: AdamWThreadRequest, transfer: ArrayBuffer[]): Promise<void> {
    const r = await this.call(s, request, transfer);
    if (r.kind !== 'weights') throw new Error(`AdamW thread answered '${r.kind}' to ${request.kind}`);
    s.names.forEach((name, i) => (this.params.get(name)!.data = r.weights[i]!));
  }

  /** One request to one thread (one at a time per thread). */
  private call(s: Share, request: AdamWThreadRequest, transfer: ArrayBuffer[]): Promise<AdamWThreadReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      s.pending = { resolve, reject, request: request.kind };
      s.worker.postMessage(request, transfer);
    });
  }

  private answered(s: Share, reply: AdamWThreadReply): void {
    const pending = s.pending;
    s.pending = undefined;
    if (!pending) return;
    if (reply.kind === 'error') {
      this.fail(new Error(`AdamW thread: ${reply.message}`));
      pending.reject(this.failure!);
    } else pending.resolve(reply);
  }

  /** The first failure sticks; every waiting call is rejected with it. */
  private fail(e: Error): void {
    this.failure ??= e;
    for (const s of this.shares) {
      const pending = s.pending;
      s.pending = undefined;
      pending?.reject(this.failure);
    }
  }
}

/** Names split into at most `groups` lists of about equal total size: largest first, each to the least loaded list (ties: the first); each list keeps the input order. */
export function partitionBySize(sizes: readonly (readonly [string, number])[], groups: number): string[][] {
  const n = Math.max(1, Math.min(Math.floor(groups), sizes.length));
  const load = new Array<number>(n).fill(0);
  const group = new Map<string, number>();
  const bySize = sizes.map(([name, size], index) => ({ name, size, index })).sort((a, b) => b.size - a.size || a.index - b.index);
  for (const { name, size } of bySize) {
    const k = load.indexOf(Math.min(...load));
    load[k]! += size;
    group.set(name, k);
  }
  return Array.from({ length: n }, (_, k) => sizes.filter(([name]) => group.get(name) === k).map(([name]) => name));
}

/** Whether the array is the whole of its buffer (it can then be transferred alone). */
function ownsBuffer(a: Float32Array): boolean {
  return a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && !(a.buffer instanceof SharedArrayBuffer);
}

function own(a: Float32Array): Float32Array {
  return ownsBuffer(a) ? a : a.slice();
}
