/**
 * Probes /health, /metrics and /ready on a fixed schedule, whatever the server's latency (a stalled
 * server gets a pile of probes, each timed from when it was due, as a kubelet would see it), each
 * on a fresh connection. Loopback only.
 */
import { Agent, request } from 'undici';
import { assertLoopbackUrl } from '../../loadtest/loopback.ts';
import type { ProbeEndpoint, ProbeSample } from './phases.ts';

export interface ProbeSchedule {
  endpoint: ProbeEndpoint;
  everyMs: number;
}

export const DEFAULT_SCHEDULE: readonly ProbeSchedule[] = [
  { endpoint: '/health', everyMs: 100 },
  { endpoint: '/metrics', everyMs: 100 },
  { endpoint: '/ready', everyMs: 500 },
];

/**
 * Probes still unanswered per endpoint before new ones are skipped: bounds a long stall, and keeps
 * the open connections (3 × 50) under the server's listen backlog (511), past which new ones would
 * wait for SYN retries and show latency the server did not cause.
 */
const MAX_IN_FLIGHT = 50;
const TIMEOUT_MS = 120_000;

export class Prober {
  readonly samples: ProbeSample[] = [];
  /** Probes not sent because too many were already waiting. */
  skipped = 0;
  private readonly agent = new Agent({ pipelining: 0, connections: null });
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly inFlight = new Map<ProbeEndpoint, number>();
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly base: string) {
    assertLoopbackUrl(base);
  }

  start(schedule: readonly ProbeSchedule[] = DEFAULT_SCHEDULE): void {
    for (const { endpoint, everyMs } of schedule) {
      const t = setInterval(() => this.probe(endpoint), everyMs);
      this.timers.push(t);
    }
  }

  private probe(endpoint: ProbeEndpoint): void {
    const n = this.inFlight.get(endpoint) ?? 0;
    if (n >= MAX_IN_FLIGHT) {
      this.skipped++;
      return;
    }
    this.inFlight.set(endpoint, n + 1);
    const atMs = performance.now();
    const done = (async () => {
      let status = 0;
      try {
        const res = await request(this.base + endpoint, { dispatcher: this.agent, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
        await res.body.dump();
        status = res.statusCode;
      } catch {
        status = 0;
      }
      this.samples.push({ endpoint, atMs, ms: performance.now() - atMs, status });
      this.inFlight.set(endpoint, (this.inFlight.get(endpoint) ?? 1) - 1);
    })();
    this.pending.add(done);
    void done.finally(() => this.pending.delete(done));
  }

  /** Stop sending; wait for the probes still out. */
  async stop(): Promise<void> {
    for (const t of this.timers.splice(0)) clearInterval(t);
    await Promise.all([...this.pending]);
  }

  async close(): Promise<void> {
    await this.stop();
    await this.agent.close();
  }
}
