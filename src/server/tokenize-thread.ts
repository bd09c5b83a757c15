/**
 * Tokenizing off the HTTP thread: a body of a few MiB takes seconds to encode, which on the main
 * thread would hold up every other request, health probe and scrape. POST /tokenize and
 * /detokenize tokenize here, and so do the generation routes for any prompt that is not small
 * (prompt-encoding.ts). A small pool of worker threads, each started when a job finds no idle
 * one and none keeping the process alive, fed from one queue: one long encode leaves the other
 * thread to everyone else. A job's wait is bounded (the request deadline) and cancelled with its
 * request; a job nobody waits for any more has its thread stopped, and a job that crashes its
 * thread fails alone (the next job starts a fresh thread).
 */
import type { Worker } from 'node:worker_threads';
import { RequestAbortedError, RequestTimeoutError } from '../runtime/engine/errors.ts';
import type { Tokenizer, TokenizerSource } from '../runtime/tokenizer/types.ts';
import { siblingModule, startWorkerThread } from '../runtime/threads/worker-thread.ts';
import type { ChatTemplate } from './chat-template.ts';
import { ApiError, type ErrorStatus, internalError, queueFull, unavailable } from './errors.ts';
import { RETRY_AFTER_SECONDS } from './service-errors.ts';
import type { ChatMessage } from './protocol.ts';

/** One piece of tokenizer work, as it crosses to the thread. */
export type TokenizeJob =
  | { op: 'prompt'; text: string; addBos: boolean; tokenStrs: boolean }
  | { op: 'prompts'; texts: string[]; addBos: boolean }
  | { op: 'chat'; messages: ChatMessage[]; addGenerationPrompt: boolean; tokenStrs: boolean; tools?: unknown[] }
  | { op: 'detokenize'; tokens: number[] };

export interface TokenizeResult {
  tokens?: number[];
  tokenStrs?: string[];
  /** Op `prompts`: each text's tokens. */
  tokenLists?: number[][];
  text?: string;
}

/** What the thread needs to tokenize as the server does: the tokenizer and the chat template's text. */
export interface TokenizeThreadInit {
  tokenizer: TokenizerSource;
  chatTemplate: string;
}

/** Most tokenizer threads: one long encode leaves the other free for everyone else's; more would take cores from the engines. */
export const TOKENIZE_THREADS = 2;

export interface TokenizeThreadOptions {
  /** Most threads at once (default TOKENIZE_THREADS). */
  threads?: number;
  /** Longest a job may wait and run, in ms (the request deadline, --request-timeout-ms); 0 or absent: no limit. */
  timeoutMs?: number;
  /** Most jobs waiting for a thread (--max-queue, as for generation); one more is a 429. Default 64. */
  maxQueued?: number;
  /** Where a thread that stopped under a job, or an unexpected failure, is reported (default: stderr). */
  log?: (line: string) => void;
}

/** An ApiError as it crosses threads. */
export interface WireApiError {
  status: ErrorStatus;
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

export type TokenizeReply = { id: number; result: TokenizeResult } | { id: number; error: WireApiError };

/** The work itself, the same on the thread and inline (a small prompt, or an app built without a thread). */
export function runTokenizeJob(job: TokenizeJob, tokenizer: Tokenizer, template: ChatTemplate): TokenizeResult {
  switch (job.op) {
    case 'detokenize':
      return { text: tokenizer.decode(job.tokens) };
    case 'prompts':
      return { tokenLists: job.texts.map((text) => tokenizer.encode(text, { addBos: job.addBos })) };
    case 'prompt':
    case 'chat': {
      const tokens =
        job.op === 'prompt'
          ? tokenizer.encode(job.text, { addBos: job.addBos })
          : template.encode(job.messages, tokenizer, { addGenerationPrompt: job.addGenerationPrompt, ...(job.tools && { tools: job.tools }) });
      return { tokens, ...(job.tokenStrs && { tokenStrs: tokens.map((t) => tokenizer.tokenText(t)) }) };
    }
  }
}

export function toWireApiError(e: unknown): WireApiError {
  if (e instanceof ApiError) return { status: e.status, message: e.message, type: e.type, param: e.param, code: e.code };
  return { status: 500, message: `tokenizing failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`, type: 'server_error', param: null, code: null };
}

/** A job from the call to its settling: queued, then on a thread. */
interface Entry {
  id: number;
  job: TokenizeJob;
  settle: (outcome: { result: TokenizeResult } | { error: Error }) => void;
  thread?: Thread;
}

interface Thread {
  worker: Worker;
  /** The job it runs; undefined: idle. */
  entry?: Entry;
}

const SHUTTING_DOWN = 'The server is shutting down and takes no new requests.';

export class TokenizeThread {
  private readonly threads: Thread[] = [];
  private readonly queue: Entry[] = [];
  private nextId = 1;
  private readonly maxThreads: number;
  private readonly timeoutMs: number;
  private readonly maxQueued: number;
  private readonly log: (line: string) => void;

  constructor(
    private readonly init: TokenizeThreadInit,
    options: TokenizeThreadOptions = {},
  ) {
    this.maxThreads = Math.max(1, options.threads ?? TOKENIZE_THREADS);
    this.timeoutMs = options.timeoutMs ?? 0;
    this.maxQueued = Math.max(1, options.maxQueued ?? 64);
    this.log = options.log ?? ((line) => process.stderr.write(line + '\n'));
  }

  /**
   * The job's result; `signal` (the client's connection) aborting gives up the wait and the work.
   * With every thread busy and the queue full, a 429: each queued job holds its request's text.
   */
  run(job: TokenizeJob, signal?: AbortSignal): Promise<TokenizeResult> {
    if (signal?.aborted) return Promise.reject(clientGone());
    if (this.queue.length >= this.maxQueued && !this.threads.some((t) => !t.entry) && this.threads.length >= this.maxThreads) return Promise.reject(queueFull(RETRY_AFTER_SECONDS));
    return new Promise((resolve, reject) => {
      const onAbort = () => this.abandon(entry, clientGone());
      const timer = this.timeoutMs > 0 ? setTimeout(() => this.abandon(entry, new RequestTimeoutError(`The prompt was not tokenized within the request deadline of ${this.timeoutMs} ms; send a shorter prompt or raise --request-timeout-ms.`)), this.timeoutMs) : undefined;
      const entry: Entry = {
        id: this.nextId++,
        job,
        settle: (outcome) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          if ('result' in outcome) resolve(outcome.result);
          else reject(outcome.error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(entry);
      this.dispatch();
    });
  }

  /** Stop every thread; queued jobs and jobs in flight fail as refused by a server shutting down. */
  async close(): Promise<void> {
    const entries = [...this.queue, ...this.threads.flatMap((t) => (t.entry ? [t.entry] : []))];
    this.queue.length = 0;
    const stopping = this.threads.splice(0).map((t) => t.worker.terminate());
    for (const e of entries) e.settle({ error: unavailable(SHUTTING_DOWN) });
    await Promise.allSettled(stopping);
  }

  /** Queued jobs onto idle threads, starting threads up to the limit. */
  private dispatch(): void {
    while (this.queue.length > 0) {
      const thread = this.threads.find((t) => !t.entry) ?? (this.threads.length < this.maxThreads ? this.start() : undefined);
      if (!thread) return;
      const entry = this.queue.shift()!;
      thread.entry = entry;
      entry.thread = thread;
      thread.worker.postMessage({ id: entry.id, job: entry.job });
    }
  }

  /** Nobody waits for this job any more: out of the queue, or its thread stopped (its work is of use to no one). */
  private abandon(entry: Entry, error: Error): void {
    const queued = this.queue.indexOf(entry);
    if (queued >= 0) this.queue.splice(queued, 1);
    else if (entry.thread?.entry === entry) this.stop(entry.thread);
    else return;
    entry.settle({ error });
    this.dispatch();
  }

  private stop(thread: Thread): void {
    const i = this.threads.indexOf(thread);
    if (i >= 0) this.threads.splice(i, 1);
    thread.entry = undefined;
    void thread.worker.terminate();
  }

  private start(): Thread {
    const worker = startWorkerThread(siblingModule(import.meta.url, 'tokenize-worker'), { workerData: this.init, name: 'tokenize' });
    // Idle, it must not keep a server that is shutting down alive.
    worker.unref();
    const thread: Thread = { worker };
    worker.on('message', (m: TokenizeReply) => this.answered(thread, m));
    worker.on('error', (e) => this.lost(thread, e.message));
    worker.on('exit', (code) => this.lost(thread, `exit code ${code}`));
    this.threads.push(thread);
    return thread;
  }

  private answered(thread: Thread, m: TokenizeReply): void {
    const entry = thread.entry;
    if (!entry || entry.id !== m.id) return;
    thread.entry = undefined;
    if ('result' in m) entry.settle({ result: m.result });
    else entry.settle({ error: this.apiError(m.error) });
    this.dispatch();
  }

  /** The thread stopped by itself (a crash, or out of memory): its job fails alone, the queue goes on in fresh threads. */
  private lost(thread: Thread, reason: string): void {
    if (!this.threads.includes(thread)) return;
    this.threads.splice(this.threads.indexOf(thread), 1);
    const entry = thread.entry;
    if (entry) {
      this.log(`tokenizer thread stopped while tokenizing (${reason}); that request fails, the next job starts a fresh thread`);
      entry.settle({ error: new ApiError(500, `The tokenizer thread stopped while tokenizing this request (${reason}); try again.`, 'server_error') });
    }
    this.dispatch();
  }

  /** A refusal as the thread gave it; an unexpected failure is logged and answered without internals. */
  private apiError(w: WireApiError): ApiError {
    if (w.status !== 500) return new ApiError(w.status, w.message, w.type, w.param, w.code);
    this.log(`internal error on the tokenizer thread: ${w.message}`);
    return internalError();
  }
}

function clientGone(): RequestAbortedError {
  return new RequestAbortedError('The client closed the connection while its prompt was being tokenized.');
}
