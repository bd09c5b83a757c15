/**
 * The admin API as the speedup benchmark uses it: start a prune job, poll it to the end (bounded in
 * time), unload a variant, scrape /metrics. Loopback only, like the load generator.
 */
import { Agent, request } from 'undici';
import { assertLoopbackUrl } from '../../loadtest/loopback.ts';
import type { PruneReport } from '../../src/mop/report.ts';

export interface PruneRequestBody {
  target: number;
  strategy: 'mop' | 'depth' | 'width';
  id: string;
  activate: false;
  samples: number;
  seq_len: number;
  seed?: number;
  calibration?: string;
  /** Recovery fine-tuning (the server's default is on); benchmarks of speed or isolation say 'none'. */
  recovery?: 'none' | 'lora' | 'full';
  /** What the target counts: block parameters (default) or decode-step time (latency-aware MoP). */
  budget?: 'params' | 'latency';
}

export interface PruneJobResult {
  jobId: string;
  status: string;
  variant: string | null;
  error: string | null;
  report: PruneReport | undefined;
  seconds: number;
}

interface JobView {
  id: string;
  status: 'running' | 'succeeded' | 'failed' | 'cancelled';
  variant: string | null;
  error: string | null;
  progress: { step: number; totalEstimate: number; ratio: number } | null;
  report?: PruneReport;
}

export class AdminClient {
  /**
   * No keep-alive: a prune job keeps the event loop busy for seconds at a time, so the server's
   * keep-alive timer fires late and may close a socket just as the next poll is written on it.
   */
  private readonly agent = new Agent({ pipelining: 0, connections: 4 });

  constructor(
    readonly url: string,
    private readonly token: string,
    /** Per-call header and body timeout; a server stalled by a prune may take longer than the default. */
    private readonly callTimeoutMs = 60_000,
  ) {
    assertLoopbackUrl(url);
  }

  private async call(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    // GETs are retried on a network error (idempotent); anything else fails at once.
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await request(this.url + path, {
          method,
          dispatcher: this.agent,
          headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
          ...(body !== undefined && { body: JSON.stringify(body) }),
          headersTimeout: this.callTimeoutMs,
          bodyTimeout: this.callTimeoutMs,
        });
        const text = await res.body.text();
        let json: unknown = text;
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON: keep the text
        }
        return { status: res.statusCode, json };
      } catch (e) {
        if (method !== 'GET' || attempt >= 3) throw e;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  /**
   * POST /admin/prune, then GET /admin/prune/{job} every `pollMs` until it is no longer running or
   * `timeoutMs` has passed (then the job is cancelled and this throws).
   */
  async prune(body: PruneRequestBody, o: { timeoutMs: number; pollMs?: number; onProgress?: (line: string) => void }): Promise<PruneJobResult> {
    const t0 = performance.now();
    const started = await this.call('POST', '/admin/prune', body);
    if (started.status !== 202) throw new Error(`POST /admin/prune ${JSON.stringify(body)}: HTTP ${started.status}: ${JSON.stringify(started.json)}`);
    const jobId = (started.json as JobView).id;
    const pollMs = o.pollMs ?? 500;
    let lastLine = '';
    for (let polls = 0; ; polls++) {
      const elapsed = performance.now() - t0;
      if (elapsed > o.timeoutMs) {
        await this.call('DELETE', `/admin/prune/${jobId}`).catch(() => undefined);
        throw new Error(`prune job ${jobId} (${body.id}) did not finish within ${(o.timeoutMs / 1000).toFixed(0)} s; cancelled`);
      }
      await new Promise((r) => setTimeout(r, pollMs));
      const got = await this.call('GET', `/admin/prune/${jobId}`);
      if (got.status !== 200) throw new Error(`GET /admin/prune/${jobId}: HTTP ${got.status}: ${JSON.stringify(got.json)}`);
      const view = got.json as JobView;
      if (view.status !== 'running') {
        return { jobId, status: view.status, variant: view.variant, error: view.error, report: view.report, seconds: (performance.now() - t0) / 1000 };
      }
      const p = view.progress;
      const line = p ? `step ${p.step}/${p.totalEstimate}, ratio ${p.ratio.toFixed(3)}` : 'starting';
      if (line !== lastLine && o.onProgress && polls % 4 === 0) o.onProgress(line);
      lastLine = line;
    }
  }

  /** DELETE /admin/models/{id}: the variant's requests drain, then its session is released. */
  async unload(id: string): Promise<void> {
    const r = await this.call('DELETE', `/admin/models/${encodeURIComponent(id)}`);
    if (r.status !== 200) throw new Error(`DELETE /admin/models/${id}: HTTP ${r.status}: ${JSON.stringify(r.json)}`);
  }

  /** GET /metrics (text exposition). */
  async metrics(): Promise<string> {
    const r = await this.call('GET', '/metrics');
    if (r.status !== 200 || typeof r.json !== 'string') throw new Error(`GET /metrics: HTTP ${r.status}`);
    return r.json;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
