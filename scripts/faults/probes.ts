/**
 * /health and /ready polled on a fixed schedule while a fault runs, each probe on a fresh
 * connection with its own bounded wait (a probe that gets nothing in time is recorded as status 0),
 * so the report can say when each first turned 503 after the fault and when it came back.
 */
import { send } from './client.ts';

export interface ProbeSample {
  endpoint: '/health' | '/ready';
  atMs: number;
  status: number;
  code?: string;
}

export class Probes {
  readonly samples: ProbeSample[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly pending = new Set<Promise<void>>();
  private inFlight = 0;

  constructor(
    private readonly baseUrl: string,
    everyMs = 100,
    private readonly waitMs = 2000,
  ) {
    this.timer = setInterval(() => {
      // A hung server gets at most a few probes piled up, not one per tick.
      if (this.inFlight >= 10) return;
      for (const endpoint of ['/health', '/ready'] as const) this.probe(endpoint);
    }, everyMs);
  }

  private probe(endpoint: '/health' | '/ready'): void {
    this.inFlight++;
    const p = send(this.baseUrl, { path: endpoint, method: 'GET', body: {}, statusWaitMs: this.waitMs, endWaitMs: this.waitMs }).then((o) => {
      this.samples.push({ endpoint, atMs: o.atMs, status: o.status, ...(o.code !== undefined && { code: o.code }) });
      this.inFlight--;
    });
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.pending]);
  }

  /** ms from `sinceMs` to the first probe of `endpoint` sent after it that did not get 200; null if none. */
  firstFailure(endpoint: '/health' | '/ready', sinceMs: number): { ms: number; status: number; code?: string } | null {
    const s = this.sorted(endpoint, sinceMs).find((p) => p.status !== 200);
    return s ? { ms: s.atMs - sinceMs, status: s.status, ...(s.code !== undefined && { code: s.code }) } : null;
  }

  /** ms from `sinceMs` to the first 200 of `endpoint` after its first failure since then; null if it never came back. */
  recovered(endpoint: '/health' | '/ready', sinceMs: number): number | null {
    const after = this.sorted(endpoint, sinceMs);
    const failed = after.findIndex((p) => p.status !== 200);
    if (failed < 0) return null;
    const back = after.slice(failed).find((p) => p.status === 200);
    return back ? back.atMs - sinceMs : null;
  }

  private sorted(endpoint: string, sinceMs: number): ProbeSample[] {
    return this.samples.filter((p) => p.endpoint === endpoint && p.atMs >= sinceMs).sort((a, b) => a.atMs - b.atMs);
  }
}
