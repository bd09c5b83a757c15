/**
 * Tokenizing for POST /tokenize and /detokenize off the HTTP thread: a body of a few MiB takes
 * seconds to encode, which on the main thread would hold up every other request, health probe
 * and scrape. One worker thread per server, started on first use and not keeping the process
 * alive; a job that crashes it fails alone, and the next job starts a fresh thread.
 */
import type { Worker } from 'node:worker_threads';
import type { Tokenizer, TokenizerSource } from '../runtime/tokenizer/types.ts';
import { siblingModule, startWorkerThread } from '../service/threads/worker-thread.ts';
import type { ChatTemplate } from './chat-template.ts';
import { ApiError, type ErrorStatus } from './errors.ts';
import type { ChatMessage } from './protocol.ts';

/** One piece of tokenizer work, as it crosses to the thread. */
export type TokenizeJob =
  | { op: 'prompt'; text: string; addBos: boolean; tokenStrs: boolean }
  | { op: 'chat'; messages: ChatMessage[]; addGenerationPrompt: boolean; tokenStrs: boolean }
  | { op: 'detokenize'; tokens: number[] };

export interface TokenizeResult {
  tokens?: number[];
  tokenStrs?: string[];
  text?: string;
}

/** What the thread needs to tokenize as the server does: the tokenizer and the chat template's text. */
export interface TokenizeThreadInit {
  tokenizer: TokenizerSource;
  chatTemplate: string;
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

/** The work itself, the same on the thread and inline (an app built without a thread). */
export function runTokenizeJob(job: TokenizeJob, tokenizer: Tokenizer, template: ChatTemplate): TokenizeResult {
  if (job.op === 'detokenize') return { text: tokenizer.decode(job.tokens) };
  const tokens = job.op === 'prompt' ? tokenizer.encode(job.text, { addBos: job.addBos }) : template.encode(job.messages, tokenizer, { addGenerationPrompt: job.addGenerationPrompt });
  return { tokens, ...(job.tokenStrs && { tokenStrs: tokens.map((t) => tokenizer.tokenText(t)) }) };
}

export function toWireApiError(e: unknown): WireApiError {
  if (e instanceof ApiError) return { status: e.status, message: e.message, type: e.type, param: e.param, code: e.code };
  return { status: 500, message: `tokenizing failed: ${e instanceof Error ? e.message : String(e)}`, type: 'server_error', param: null, code: null };
}

interface Pending {
  resolve: (r: TokenizeResult) => void;
  reject: (e: Error) => void;
}

export class TokenizeThread {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  constructor(private readonly init: TokenizeThreadInit) {}

  run(job: TokenizeJob): Promise<TokenizeResult> {
    const worker = this.started();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, job });
    });
  }

  /** Stop the thread; jobs in flight fail. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await worker.terminate();
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    const worker = startWorkerThread(siblingModule(import.meta.url, 'tokenize-worker'), { workerData: this.init, name: 'tokenize' });
    // Idle, it must not keep a server that is shutting down alive.
    worker.unref();
    worker.on('message', (m: TokenizeReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if ('error' in m) p.reject(new ApiError(m.error.status, m.error.message, m.error.type, m.error.param, m.error.code));
      else p.resolve(m.result);
    });
    const fail = (reason: string) => {
      if (this.worker === worker) this.worker = undefined;
      for (const p of this.pending.values()) p.reject(new ApiError(500, `the tokenizer thread stopped (${reason}); try again`, 'server_error'));
      this.pending.clear();
    };
    worker.on('error', (e) => fail(e.message));
    worker.on('exit', (code) => fail(`exit code ${code}`));
    this.worker = worker;
    return worker;
  }
}
