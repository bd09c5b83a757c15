/**
 * The main thread's side of a variant's disposable grammar compile thread
 * (runtime/grammar/compile-worker.ts): started on first use, it compiles one grammar at a time
 * under a time limit, and is terminated when a grammar overruns it (the next compile starts a new
 * one). Only this thread is ever terminated, never an engine worker: it runs no model step.
 */
import type { Worker } from 'node:worker_threads';
import type { CompileWorkerInit, FromCompileWorker, ToCompileWorker } from '../../runtime/grammar/compile-protocol.ts';
import { GrammarError, type GrammarSpec } from '../../runtime/grammar/grammar-spec.ts';
import { siblingModule, startWorkerThread } from '../../runtime/threads/worker-thread.ts';

/** The compile thread's entry module. */
export const defaultCompileWorker = siblingModule(import.meta.url, '../../runtime/grammar/compile-worker');

/** How long the thread may take to build its compiler (the vocabulary): not counted against any grammar. */
const START_LIMIT_MS = 60_000;

/** `compiled`: within the limit (and usable); `timed_out`: not within it (the thread was terminated). */
export type CompileOutcome = 'compiled' | 'timed_out';

/** What a GrammarGate needs of a compile thread (tests give it their own). */
export interface TimedGrammarCompiler {
  /** Rejects with a GrammarError when the grammar is unusable, with an Error when the thread failed. */
  compile(spec: GrammarSpec, limitMs: number): Promise<CompileOutcome>;
  close(): Promise<void>;
}

interface LiveThread {
  worker: Worker;
  /** Settles when the compiler is built (or the thread failed to start). */
  ready: Promise<void>;
}

export class GrammarCompileThread implements TimedGrammarCompiler {
  private live: LiveThread | undefined;
  /** The compile in flight (one at a time): settled by the thread's answer, its death, or close. */
  private current: { id: number; settle: (answer: FromCompileWorker | Error) => void } | undefined;
  private nextId = 1;

  constructor(
    private readonly init: CompileWorkerInit,
    private readonly module: URL = defaultCompileWorker,
  ) {}

  /** The limit runs from when the grammar is handed to a started thread; one call at a time. */
  async compile(spec: GrammarSpec, limitMs: number): Promise<CompileOutcome> {
    if (this.current) throw new Error('GrammarCompileThread.compile: one compile at a time');
    const worker = await this.started();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.current = undefined;
        this.discard();
        resolve('timed_out');
      }, limitMs);
      this.current = {
        id,
        settle: (answer) => {
          clearTimeout(timer);
          this.current = undefined;
          if (answer instanceof Error) reject(answer);
          else if (answer.type === 'checked') resolve('compiled');
          else if (answer.type === 'failed') reject(answer.grammar ? new GrammarError(answer.message) : new Error(`the grammar compile thread failed: ${answer.message}`));
        },
      };
      worker.postMessage({ id, spec } satisfies ToCompileWorker);
    });
  }

  /** Terminate the thread; a compile in flight fails. */
  async close(): Promise<void> {
    this.current?.settle(new Error('the grammar compile thread was closed (the model is being unloaded)'));
    const live = this.live;
    this.live = undefined;
    await live?.worker.terminate();
  }

  private async started(): Promise<Worker> {
    const live = (this.live ??= this.start());
    try {
      await live.ready;
    } catch (e) {
      if (this.live === live) this.discard();
      throw e;
    }
    return live.worker;
  }

  private start(): LiveThread {
    const worker = startWorkerThread(this.module, { workerData: this.init, name: 'grammar compile' });
    // Never what keeps the process up: the variant terminates it on release.
    worker.unref();
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the grammar compile thread did not start within ${START_LIMIT_MS / 1000} s`)), START_LIMIT_MS);
      worker.on('message', (m: FromCompileWorker) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolve();
        } else if (this.live?.worker === worker && m.id === this.current?.id) this.current.settle(m);
      });
      const gone = (why: string) => {
        clearTimeout(timer);
        const error = new Error(`the grammar compile thread ${why}`);
        reject(error);
        // A thread this client terminated is already forgotten.
        if (this.live?.worker !== worker) return;
        this.live = undefined;
        this.current?.settle(error);
      };
      worker.on('error', (e) => gone(`failed: ${e.message}`));
      worker.on('exit', (code) => gone(`exited with code ${code}`));
    });
    return { worker, ready };
  }

  /** Forget the thread and terminate it (it may be deep in a compile: nothing else runs there). */
  private discard(): void {
    const live = this.live;
    this.live = undefined;
    void live?.worker.terminate();
  }
}
