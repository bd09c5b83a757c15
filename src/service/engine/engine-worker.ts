/**
 * The engine worker thread: one served variant's session, KV cache and continuous-batching
 * scheduler. ONNX Runtime runs each step synchronously on the calling thread, so this thread is
 * where the model math blocks, never the main thread that answers HTTP, health probes and scrapes.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createDecoderSession } from '../../runtime/engine/create-session.ts';
import type { DecoderSession } from '../../runtime/engine/decoder-session.ts';
import { type PromptScores, ScoringSession } from '../../runtime/engine/prompt-scores.ts';
import { cpuTarget } from '../../runtime/device/device.ts';
import { ModelSession } from '../../runtime/engine/model-session.ts';
import { BatchScheduler } from '../../runtime/engine/scheduler.ts';
import type { SchedulerStats } from '../../runtime/engine/scheduler-types.ts';
import { createTokenizer } from '../../runtime/tokenizer/create.ts';
import { type EngineInit, type FromEngine, type ToEngine, toWireError } from './engine-protocol.ts';

const port = parentPort!;
const init = workerData as EngineInit;
const post = (m: FromEngine) => port.postMessage(m);

/** How often a busy worker pushes its scheduler stats (the main thread's metrics read them). */
const STATS_INTERVAL_MS = 100;

async function main(): Promise<void> {
  const t0 = performance.now();
  let session: DecoderSession;
  let scheduler: BatchScheduler;
  let scoring: ScoringSession;
  try {
    const tokenizer = createTokenizer(init.tokenizer);
    session = await createDecoderSession(init.spec, init.weights, {
      maxBatch: init.session.maxBatch,
      maxContext: init.session.maxContext,
      target: init.session.target,
      ...(init.session.prefillChunk !== undefined && { prefillChunk: init.session.prefillChunk }),
      ...(init.session.threads !== undefined && { threads: init.session.threads }),
      ...(init.session.batchPrefill !== undefined && { batchPrefill: init.session.batchPrefill }),
      ...(init.session.spin !== undefined && { spin: init.session.spin }),
      ...(init.fileBlocks && { fileBlocks: init.fileBlocks }),
    });
    // Prompt scoring needs logits at every position: its own session, built on first use. The native
    // CUDA decoder returns last-position logits only, so its variants score on the CPU.
    scoring = new ScoringSession(init.spec, init.weights, {
      maxContext: session.maxContext,
      target: init.session.target.device === 'cuda-native' ? cpuTarget : init.session.target,
      ...(init.session.threads !== undefined && { threads: init.session.threads }),
      ...(init.fileBlocks && { fileBlocks: init.fileBlocks }),
      // Scored in pieces of the scheduler's prefill chunk: decode steps wait for one piece at most.
      chunk: init.scheduling.prefillChunk,
      // No --ort-spin here: a second spinning pool beside the serving session's would take its cores.
    });
    scheduler = new BatchScheduler(session, tokenizer, init.scheduling, scoring);
  } catch (e) {
    post({ type: 'init-failed', error: toWireError(e) });
    port.close();
    return;
  }
  scheduler.onStepFailure = (error) => post({ type: 'step-failed', error: toWireError(error) });
  const aborts = new Map<number, AbortController>();
  let lastStats = '';
  const pushStats = () => {
    const stats: SchedulerStats = scheduler.stats();
    const key = JSON.stringify(stats);
    if (key === lastStats) return;
    lastStats = key;
    post({ type: 'stats', stats });
  };
  const statsTimer = setInterval(pushStats, STATS_INTERVAL_MS);
  // Proof of life for the main thread's watchdog: it stops when this thread is blocked, and says
  // how long the session call in progress has run when a call is what blocks the scheduler.
  const heartbeat = setInterval(() => post({ type: 'heartbeat', busyMs: scheduler.busyMs() }), init.heartbeatMs ?? 1000);

  const run = async (id: number, request: ToEngine & { type: 'submit' }) => {
    const ac = new AbortController();
    aborts.set(id, ac);
    try {
      const handle = scheduler.submit({ ...request.request, signal: ac.signal });
      let first = true;
      for await (const event of handle.events) {
        // Stats first, so the main thread's gauges already count a finished request as gone.
        if (event.type === 'finish' || first) pushStats();
        if (first && handle.admittedAt !== undefined) {
          post({ type: 'event', id, event, admittedAt: performance.timeOrigin + handle.admittedAt });
          first = false;
        } else post({ type: 'event', id, event });
      }
    } catch (e) {
      post({ type: 'rejected', id, error: toWireError(e) });
    } finally {
      aborts.delete(id);
    }
  };

  port.on('message', (m: ToEngine) => {
    switch (m.type) {
      case 'submit':
        void run(m.id, m);
        break;
      case 'abort':
        aborts.get(m.id)?.abort();
        break;
      case 'score': {
        const ac = new AbortController();
        aborts.set(m.id, ac);
        new Promise<PromptScores>((resolve) => resolve(scheduler.score(m.tokens, m.topN, ac.signal)))
          .then(
            (scores) => post({ type: 'scored', id: m.id, scores }),
            (e: unknown) => post({ type: 'rejected', id: m.id, error: toWireError(e) }),
          )
          .finally(() => aborts.delete(m.id));
        break;
      }
      case 'drain':
        void scheduler.drain(m.graceMs).then(() => {
          pushStats();
          post({ type: 'drained' });
        });
        break;
      case 'exit':
        // Between two steps (this handler never runs inside one), so no native call is cut short.
        process.exit(1);
        break;
      case 'release':
        clearInterval(statsTimer);
        clearInterval(heartbeat);
        void Promise.allSettled([session.release(), scoring.release()]).finally(() => {
          post({ type: 'released' });
          port.close();
        });
        break;
    }
  });
  const weightBlocks = session instanceof ModelSession ? session.graph.weightBlocks : undefined;
  post({ type: 'ready', maxContext: session.maxContext, prefillChunk: session.prefillChunk, target: session.target, loadMs: performance.now() - t0, ...(weightBlocks && { weightBlocks }) });
}

void main();
