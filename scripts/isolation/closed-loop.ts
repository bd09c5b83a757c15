/**
 * Closed-loop serving traffic until a condition ends it: `concurrency` workers, each sending its
 * next request (through the load generator's runLoad, one request per call) as soon as its last
 * one ends. Unlike one long runLoad, it can stop when a prune job finishes without aborting the
 * requests in flight, and keeps the same concurrency up to the end.
 */
import { runLoad } from '../../loadtest/load-generator.ts';
import type { RequestSample } from './phases.ts';

export interface ClosedLoopOptions {
  url: string;
  concurrency: number;
  prompts: readonly string[];
  maxTokens: number;
  /** Workers start no new request once this returns true. */
  done: () => boolean;
  /** Bound in requests across workers. */
  maxRequests: number;
  timeoutSec: number;
  /** Prompt numbering continues across calls, so every phase does not start with the same prompt. */
  firstPrompt?: number;
}

export async function closedLoop(o: ClosedLoopOptions): Promise<RequestSample[]> {
  const samples: RequestSample[] = [];
  let issued = 0;
  const worker = async () => {
    while (!o.done() && issued < o.maxRequests) {
      const i = (o.firstPrompt ?? 0) + issued++;
      const t0 = performance.now();
      const report = await runLoad({
        url: o.url,
        scenario: 'closed',
        concurrency: 1,
        maxRequests: 1,
        durationSec: o.timeoutSec,
        gracefulStopSec: o.timeoutSec,
        timeoutSec: o.timeoutSec,
        stream: true,
        maxTokens: o.maxTokens,
        temperature: 0,
        ignoreEos: true,
        prompts: [o.prompts[i % o.prompts.length]!],
        recordRequests: true,
      });
      for (const r of report.requests ?? []) samples.push({ atMs: t0 + r.startMs, ok: r.ok, error: r.error, e2eMs: r.e2eMs, ttftMs: r.ttftMs });
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return samples;
}
