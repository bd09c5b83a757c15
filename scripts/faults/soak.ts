/**
 * The soak: one `mop serve` on the bundled model, N requests of each kind (generation, streaming,
 * scoring, chat) one kind after another through a closed loop, the server's RSS sampled every
 * 250 ms. A warm-up of every kind comes first (10% of N, 50 to 1,000 each, not measured): with
 * less, the first kind measured carried the process's own growth to its steady heap (+24% over
 * 3,000 generations after a 60-request warm-up, while the same kind run again last stayed within
 * 0.3%). Each kind's drift is measured from its first sample. Bounded: each kind stops at its time cap even if fewer
 * than N were sent.
 */
import path from 'node:path';
import { neverAnswered, type RequestSpec } from './client.ts';
import { ClosedLoop } from './closed-loop.ts';
import { chatRequest, type FaultSettings, generationRequest, mibOf, scoringRequest, sleep, streamRequest } from './harness.ts';
import type { SoakResult, SoakRow } from './report.ts';
import { ServerChild } from './server-child.ts';

export interface SoakOptions {
  settings: FaultSettings;
  /** Requests of each kind. */
  requests: number;
  /** Time cap of each kind, seconds. */
  maxSec: number;
  concurrency: number;
}

const TOLERANCE = 0.1;

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const s: FaultSettings = { ...o.settings, maxTokens: 8 };
  const args = ['--max-batch', String(Math.max(4, o.concurrency)), '--shutdown-grace-ms', '5000'];
  const result: SoakResult = { model: 'bundled stories260K (float32), 8-token generations', concurrency: o.concurrency, server: `mop serve ${args.join(' ')}`, rows: [], tolerance: TOLERANCE, error: null };
  const kinds: [string, (i: number) => RequestSpec][] = [
    ['generation', (i) => generationRequest(s, i)],
    ['streaming', (i) => streamRequest(s, i)],
    ['scoring', (i) => scoringRequest(s, i)],
    ['chat', (i) => chatRequest(s, i)],
  ];
  s.log(`soak: ${o.requests} requests of each of ${kinds.length} kinds (cap ${o.maxSec} s each)`);
  const server = new ServerChild({ entry: 'mop serve', args, logFile: path.join(s.outDir, 'faults-soak.log') });
  try {
    await server.ready(s.startWaitMs);
    // Warm-up, not measured: every kind's sessions, arenas and caches exist before the first sample.
    const warm = Math.min(1000, Math.max(50, Math.floor(o.requests * 0.1)));
    result.warmup = warm;
    for (const [, make] of kinds) await new ClosedLoop(server.url, { concurrency: o.concurrency, maxRequests: warm, maxMs: 30_000, request: (i) => ({ ...make(i), keepAlive: true }) }).done();
    for (const [kind, make] of kinds) {
      const t0 = performance.now();
      const samples: { sent: number; rss: number }[] = [];
      const loop = new ClosedLoop(server.url, { concurrency: o.concurrency, maxRequests: o.requests, maxMs: o.maxSec * 1000, request: (i) => ({ ...make(i), keepAlive: true }) });
      while (!loop.finished && !server.exit) {
        await sleep(250);
        const rss = mibOf(server.rssBytes());
        if (rss !== null) samples.push({ sent: loop.outcomes.length, rss });
      }
      const outcomes = await loop.stop();
      const end = mibOf(server.rssBytes());
      if (end !== null) samples.push({ sent: outcomes.length, rss: end });
      const ok = outcomes.filter((x) => (x.end === 'body' && x.status === 200) || x.end === 'finish').length;
      const rss = samples.map((x) => x.rss);
      const start = rss[0] ?? 0;
      const row: SoakRow = {
        kind,
        planned: o.requests,
        sent: outcomes.length,
        ok,
        failed: outcomes.length - ok - outcomes.filter(neverAnswered).length,
        neverAnswered: outcomes.filter(neverAnswered).length,
        seconds: (performance.now() - t0) / 1000,
        rssStartMiB: start,
        rssMinMiB: Math.min(...rss),
        rssMaxMiB: Math.max(...rss),
        rssEndMiB: rss.at(-1) ?? 0,
        driftEnd: start > 0 ? (rss.at(-1)! - start) / start : 0,
        driftMax: start > 0 ? (Math.max(...rss) - start) / start : 0,
        samples: thin(rss, 20),
      };
      result.rows.push(row);
      s.log(`soak ${kind}: ${row.sent} requests (${row.ok} ok) in ${row.seconds.toFixed(0)} s; RSS ${start.toFixed(0)} → ${row.rssEndMiB.toFixed(0)} MiB (max ${row.rssMaxMiB.toFixed(0)})`);
      if (server.exit) throw new Error(`the server exited (${server.exit.code ?? server.exit.signal}) during the ${kind} soak`);
    }
  } catch (e) {
    result.error = e instanceof Error ? (e.stack ?? e.message) : String(e);
  } finally {
    await server.stop(15_000);
  }
  return result;
}

/** At most `n` evenly spaced values (first and last kept). */
function thin(xs: number[], n: number): number[] {
  if (xs.length <= n) return xs.map((x) => Math.round(x));
  return Array.from({ length: n }, (_, i) => Math.round(xs[Math.round((i * (xs.length - 1)) / (n - 1))]!));
}
