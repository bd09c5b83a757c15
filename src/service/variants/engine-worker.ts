/**
 * The engine worker thread: one served variant's session, KV cache and continuous-batching
 * scheduler. ONNX Runtime runs each step synchronously on the calling thread, so this thread is
 * where the model math blocks, never the main thread that answers HTTP, health probes and scrapes.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createDecoderSession } from '../../runtime/engine/create-session.ts';
import type { DecoderSession } from '../../runtime/engine/decoder-session.ts';
import { ScoringSession } from '../../runtime/engine/prompt-scores.ts';
import { cpuTarget } from '../../runtime/device/device.ts';
import { ModelSession } from '../../runtime/engine/ort-decoder-session.ts';
import { BatchScheduler } from '../../runtime/engine/scheduler.ts';
import type { SchedulerStats } from '../../runtime/engine/scheduler-types.ts';
import { createTokenizer } from '../../runtime/tokenizer/create.ts';
import { GrammarCompiler } from '../../runtime/grammar/grammar-compiler.ts';
import type { GrammarSpec } from '../../runtime/grammar/grammar-spec.ts';
import { grammarVocabulary } from '../../runtime/grammar/vocabulary.ts';
import { type EngineInit, type FromEngine, type ToEngine, toWireError, type WireRequest } from './engine-protocol.ts';

const port = parentPort!;
const init = workerData as EngineInit;
const post = (m: FromEngine) => port.postMessage(m);

/** How often a busy worker pushes its scheduler stats (the main thread's metrics read them). */
const STATS_INTERVAL_MS = 100;

interface Engine {
  session: DecoderSession;
  scoring: ScoringSession;
  scheduler: BatchScheduler;
  /** Structured outputs' compiler over this model's vocabulary, built on first use. */
  grammars: () => GrammarCompiler;
}

/** The variant's decode session, its prompt-scoring session (built on first use) and the scheduler over both. */
async function buildEngine(): Promise<Engine> {
  const tokenizer = createTokenizer(init.tokenizer);
  const session = await createDecoderSession(init.spec, init.weights, {
    maxBatch: init.session.maxBatch,
    maxContext: init.session.maxContext,
    target: init.session.target,
    ...(init.session.prefillChunk !== undefined && { prefillChunk: init.session.prefillChunk }),
    ...(init.session.threads !== undefined && { threads: init.session.threads }),
    ...(init.session.batchPrefill !== undefined && { batchPrefill: init.session.batchPrefill }),
    ...(init.session.spin !== undefined && { spin: init.session.spin }),
    ...(init.session.cudaAddon !== undefined && { cudaAddon: init.session.cudaAddon }),
    ...(init.fileBlocks && { fileBlocks: init.fileBlocks }),
  });
  // Prompt scoring needs logits at every position: its own session. The native CUDA decoder
  // returns last-position logits only, so its variants score on the CPU.
  const scoring = new ScoringSession(init.spec, init.weights, {
    maxContext: session.maxContext,
    target: init.session.target.device === 'cuda-native' ? cpuTarget : init.session.target,
    ...(init.session.threads !== undefined && { threads: init.session.threads }),
    ...(init.fileBlocks && { fileBlocks: init.fileBlocks }),
    // Scored in pieces of the scheduler's prefill chunk: decode steps wait for one piece at most.
    chunk: init.scheduling.prefillChunk,
    // No --ort-spin here: a second spinning pool beside the serving session's would take its cores.
  });
  let grammars: GrammarCompiler | undefined;
  return {
    session,
    scoring,
    scheduler: new BatchScheduler(session, tokenizer, init.scheduling, scoring),
    grammars: () => (grammars ??= new GrammarCompiler(grammarVocabulary(tokenizer, init.spec.vocabSize))),
  };
}

/** The worker's side of the protocol: requests in, events, stats and heartbeats out. */
class EngineWorker {
  private readonly aborts = new Map<number, AbortController>();
  private lastStats = '';
  private readonly timers: NodeJS.Timeout[];

  constructor(private readonly engine: Engine) {
    engine.scheduler.onStepFailure = (error) => post({ type: 'step-failed', error: toWireError(error) });
    this.timers = [
      setInterval(() => this.pushStats(), STATS_INTERVAL_MS),
      // Proof of life for the main thread's watchdog: it stops when this thread is blocked, and says
      // how long the session call in progress has run when a call is what blocks the scheduler.
      setInterval(() => post({ type: 'heartbeat', busyMs: engine.scheduler.busyMs() }), init.heartbeatMs ?? 1000),
    ];
    port.on('message', (m: ToEngine) => this.onMessage(m));
  }

  private pushStats(): void {
    const stats: SchedulerStats = this.engine.scheduler.stats();
    const key = JSON.stringify(stats);
    if (key === this.lastStats) return;
    this.lastStats = key;
    post({ type: 'stats', stats });
  }

  private onMessage(m: ToEngine): void {
    switch (m.type) {
      case 'submit':
        void this.generate(m.id, m.request);
        break;
      case 'score':
        void this.score(m.id, m.tokens, m.topN);
        break;
      case 'check-grammar':
        void this.checkGrammar(m.id, m.spec);
        break;
      case 'abort':
        this.aborts.get(m.id)?.abort();
        break;
      case 'drain':
        void this.engine.scheduler.drain(m.graceMs).then(() => {
          this.pushStats();
          post({ type: 'drained' });
        });
        break;
      case 'exit':
        // Between two steps (this handler never runs inside one), so no native call is cut short.
        process.exit(1);
        break;
      case 'release':
        for (const t of this.timers) clearInterval(t);
        void Promise.allSettled([this.engine.session.release(), this.engine.scoring.release()]).finally(() => {
          post({ type: 'released' });
          port.close();
        });
        break;
    }
  }

  private async generate(id: number, request: WireRequest): Promise<void> {
    const ac = new AbortController();
    this.aborts.set(id, ac);
    let constraint: Awaited<ReturnType<GrammarCompiler['constraint']>> | undefined;
    try {
      // One matcher per sequence, from the grammar compiled (or cached) here in the worker.
      if (request.grammar) constraint = await this.engine.grammars().constraint(request.grammar);
      const handle = this.engine.scheduler.submit({ ...request, signal: ac.signal, ...(constraint && { constraint }) });
      constraint = undefined;
      let first = true;
      for await (const event of handle.events) {
        // Stats first, so the main thread's gauges already count a finished request as gone.
        if (event.type === 'finish' || first) this.pushStats();
        if (first && handle.admittedAt !== undefined) {
          post({ type: 'event', id, event, admittedAt: performance.timeOrigin + handle.admittedAt });
          first = false;
        } else post({ type: 'event', id, event });
      }
    } catch (e) {
      constraint?.release();
      post({ type: 'rejected', id, error: toWireError(e) });
    } finally {
      this.aborts.delete(id);
    }
  }

  private async checkGrammar(id: number, spec: GrammarSpec): Promise<void> {
    try {
      await this.engine.grammars().check(spec);
      post({ type: 'grammar-checked', id });
    } catch (e) {
      post({ type: 'rejected', id, error: toWireError(e) });
    }
  }

  private async score(id: number, tokens: number[], topN: number): Promise<void> {
    const ac = new AbortController();
    this.aborts.set(id, ac);
    try {
      post({ type: 'scored', id, scores: await this.engine.scheduler.score(tokens, topN, ac.signal) });
    } catch (e) {
      post({ type: 'rejected', id, error: toWireError(e) });
    } finally {
      this.aborts.delete(id);
    }
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  let engine: Engine;
  try {
    engine = await buildEngine();
  } catch (e) {
    post({ type: 'init-failed', error: toWireError(e) });
    port.close();
    return;
  }
  new EngineWorker(engine);
  const { session } = engine;
  const weightBlocks = session instanceof ModelSession ? session.graph.weightBlocks : undefined;
  post({ type: 'ready', maxContext: session.maxContext, prefillChunk: session.prefillChunk, target: session.target, loadMs: performance.now() - t0, ...(weightBlocks && { weightBlocks }) });
}

void main();
