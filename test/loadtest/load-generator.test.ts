/**
 * The load generator against a stub server with known delays. Bounds are generous on the slow
 * side (a loaded 2-core CI machine delays timers and reads) and strict on the fast side (a
 * latency can never be shorter than the delay the stub waited before answering).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { buildRequestBody, formatSummary, runLoad } from '../../loadtest/load-generator.ts';
import { assertLoopbackUrl, isLoopbackHost, NonLoopbackUrlError } from '../../loadtest/loopback.ts';
import { LoadConfigError, resolveLoadOptions } from '../../loadtest/options.ts';
import { startStub, type StubServer } from './helpers/stub-server.ts';

/** Slack for a busy machine: how much later than planned something may happen. */
const SLACK_MS = 300;
/** Node timers may fire up to ~1 ms before their delay as performance.now() counts it. */
const EARLY_MS = 1;
const PROMPTS = ['p0', 'p1', 'p2'];

describe('runLoad, closed model (fixed concurrency)', () => {
  let stub: StubServer;
  before(async () => {
    stub = await startStub({ delayMs: 50 });
  });
  after(() => stub.close());

  it('sends exactly maxRequests requests and times each one at no less than the 50 ms the stub waits', async () => {
    const before = stub.count;
    const r = await runLoad({ url: stub.url, scenario: 'closed', concurrency: 4, maxRequests: 20, durationSec: 30, prompts: PROMPTS });
    assert.equal(stub.count - before, 20);
    assert.equal(r.sent, 20);
    assert.equal(r.ok, 20);
    assert.equal(r.failed, 0);
    assert.equal(r.stoppedBy, 'requests');
    const e2e = r.latencyMs.e2e!;
    assert.equal(e2e.count, 20);
    assert.ok(e2e.min >= 50 - EARLY_MS, `min e2e ${e2e.min} ≥ 50 ms`);
    assert.ok(e2e.p50 < 50 + SLACK_MS, `p50 e2e ${e2e.p50} < ${50 + SLACK_MS} ms`);
    assert.ok(e2e.min <= e2e.p50 && e2e.p50 <= e2e.p90 && e2e.p90 <= e2e.p99 && e2e.p99 <= e2e.max);
    assert.equal(r.latencyMs.ttft, null, 'no TTFT without streaming');
    assert.equal(r.tokens.completion, 20 * 5, 'completion tokens from usage');
    assert.equal(r.tokens.fromUsage, 20);
    // 20 requests, 4 at a time, ≥ 50 ms each: at least 5 rounds.
    assert.ok(r.elapsedSec >= 0.25, `elapsed ${r.elapsedSec}`);
    assert.ok(Math.abs(r.throughput.requestsPerSec - 20 / r.elapsedSec) < 1e-9);
    assert.ok(Math.abs(r.throughput.outputTokensPerSec - 100 / r.elapsedSec) < 1e-9);
  });

  it('never has more requests in flight than the concurrency', async () => {
    const s = await startStub({ delayMs: 30 });
    try {
      const r = await runLoad({ url: s.url, scenario: 'closed', concurrency: 3, maxRequests: 30, durationSec: 30, prompts: PROMPTS });
      assert.equal(s.count, 30);
      assert.ok(s.maxInFlight <= 3, `the stub saw ${s.maxInFlight} at once`);
      assert.ok(s.maxInFlight >= 2, `the stub saw ${s.maxInFlight} at once: the workers do run concurrently`);
      assert.ok(r.peakInFlight <= 3);
    } finally {
      await s.close();
    }
  });

  it('stops starting requests when the duration ends', async () => {
    const t0 = performance.now();
    const r = await runLoad({ url: stub.url, scenario: 'closed', concurrency: 2, maxRequests: 1_000_000, durationSec: 0.5, prompts: PROMPTS });
    const wall = performance.now() - t0;
    assert.equal(r.stoppedBy, 'duration');
    assert.ok(wall < 500 + 50 + 3 * SLACK_MS, `run took ${wall} ms for a 0.5 s duration`);
    // 2 workers × 0.5 s / ≥ 50 ms per request: at most 2 × 11 requests can start.
    assert.ok(r.sent <= 22 && r.sent >= 2, `sent ${r.sent}`);
    assert.equal(r.ok, r.sent);
  });

  it('aborts requests still in flight at duration + gracefulStop and counts them as interrupted', async () => {
    const s = await startStub({ hang: true });
    try {
      const t0 = performance.now();
      const r = await runLoad({ url: s.url, concurrency: 2, maxRequests: 100, durationSec: 0.2, gracefulStopSec: 0.2, timeoutSec: 30, prompts: PROMPTS });
      const wall = performance.now() - t0;
      assert.ok(wall >= 400 - 5 && wall < 400 + 3 * SLACK_MS, `wall ${wall}`);
      assert.equal(r.sent, 2);
      assert.deepEqual(r.errors, { interrupted: 2 });
    } finally {
      await s.close();
    }
  });

  it('counts a request over its timeout as a timeout error', async () => {
    const s = await startStub({ hang: true });
    try {
      const r = await runLoad({ url: s.url, concurrency: 1, maxRequests: 2, durationSec: 10, timeoutSec: 0.1, prompts: PROMPTS });
      assert.equal(r.sent, 2);
      assert.deepEqual(r.errors, { timeout: 2 });
      assert.match(r.errorSamples.timeout!, /within 0.1 s/);
    } finally {
      await s.close();
    }
  });
});

describe('runLoad, streaming', () => {
  let stub: StubServer;
  before(async () => {
    // First token after 40 ms, then one every 10 ms: 5 tokens, a usage chunk, [DONE].
    stub = await startStub({ firstChunkDelayMs: 40, tokenIntervalMs: 10, tokens: 5 });
  });
  after(() => stub.close());

  it('measures TTFT to the first non-empty chunk, the gaps between tokens, and tokens from the usage chunk', async () => {
    const r = await runLoad({ url: stub.url, stream: true, concurrency: 2, maxRequests: 8, durationSec: 30, prompts: PROMPTS, recordRequests: true });
    assert.equal(r.ok, 8, JSON.stringify(r.errorSamples));
    const ttft = r.latencyMs.ttft!;
    assert.equal(ttft.count, 8);
    assert.ok(ttft.min >= 40 - EARLY_MS, `TTFT min ${ttft.min} ≥ 40 ms (the empty chunk sent at once does not count)`);
    assert.ok(ttft.p50 < 40 + SLACK_MS, `TTFT p50 ${ttft.p50}`);
    const itl = r.latencyMs.itl!;
    assert.equal(itl.count, 8 * 4, 'four gaps between five content chunks');
    assert.ok(itl.p50 >= 5 && itl.p50 < 10 + SLACK_MS, `ITL p50 ${itl.p50}`);
    for (const req of r.requests!) {
      assert.equal(req.contentChunks, 5);
      assert.equal(req.completionTokens, 5);
      assert.equal(req.tokensFrom, 'usage');
      // The four 10 ms sleeps happen after the first token, so its arrival and the last are ≥ ~40 ms apart.
      const spread = req.itlMs.reduce((a, b) => a + b, 0);
      assert.ok(spread >= 4 * (10 - EARLY_MS) - 1, `first-to-last token ${spread} ms`);
      assert.ok(req.e2eMs >= req.ttftMs! + spread - 1e-9);
      assert.ok(req.e2eMs >= 40 + 4 * 10 - 5 * EARLY_MS, `e2e ${req.e2eMs}`);
      assert.ok(Math.abs(req.tpotMs! - (req.e2eMs - req.ttftMs!) / 4) < 1e-9);
    }
    assert.equal(r.tokens.completion, 40);
    for (const body of stub.bodies.slice(-8)) {
      assert.equal(body.stream, true);
      assert.deepEqual(body.stream_options, { include_usage: true });
    }
    assert.match(formatSummary(r), /ttft ms +p50 [\d.]+ +p90 [\d.]+ +p99 [\d.]+/);
  });

  it('counts content chunks as tokens when the server sends no usage chunk', async () => {
    const r = await runLoad({ url: stub.url, stream: true, includeUsage: false, maxRequests: 2, durationSec: 30, prompts: PROMPTS });
    assert.equal(r.ok, 2);
    assert.equal(r.tokens.completion, 10);
    assert.equal(r.tokens.fromChunks, 2);
    assert.equal(stub.bodies.at(-1)!.stream_options, undefined);
  });

  it('counts a stream that ends without [DONE] as incomplete_stream', async () => {
    const s = await startStub({ omitDone: true, firstChunkDelayMs: 1, tokenIntervalMs: 1 });
    try {
      const r = await runLoad({ url: s.url, stream: true, maxRequests: 3, durationSec: 30, prompts: PROMPTS });
      assert.deepEqual(r.errors, { incomplete_stream: 3 });
      assert.equal(r.ok, 0);
      assert.equal(r.latencyMs.e2e, null, 'latencies are of successful requests only');
    } finally {
      await s.close();
    }
  });
});

describe('runLoad, open model (constant arrival rate)', () => {
  it('starts rate × duration requests, evenly spaced, when the server keeps up', async () => {
    const s = await startStub({ delayMs: 20 });
    try {
      const t0 = performance.now();
      const r = await runLoad({ url: s.url, scenario: 'open', rate: 20, durationSec: 1, maxInFlight: 10, maxRequests: 1000, prompts: PROMPTS });
      const wall = performance.now() - t0;
      assert.equal(r.arrivals, 20, 'arrivals at 0, 50, ..., 950 ms');
      assert.equal(r.sent, 20);
      assert.equal(r.dropped, 0);
      assert.equal(s.count, 20);
      assert.equal(r.stoppedBy, 'duration');
      const span = s.arrivals.at(-1)! - s.arrivals[0]!;
      // Not bunched (a burst would span ~0 ms); the first request may wait for its connection.
      assert.ok(span >= 950 - 100 && span < 950 + 2 * SLACK_MS, `first to last arrival ${span} ms`);
      assert.ok(wall >= 950 + 20 - EARLY_MS && wall < 1000 + 20 + 3 * SLACK_MS, `wall ${wall}`);
      assert.ok(r.schedulerLagMs!.count === 20);
      assert.ok(Math.abs(r.throughput.requestsPerSec - 20 / r.elapsedSec) < 1e-9);
    } finally {
      await s.close();
    }
  });

  it('drops arrivals that find maxInFlight requests in flight, and counts them', async () => {
    const s = await startStub({ delayMs: 400 });
    try {
      const r = await runLoad({ url: s.url, scenario: 'open', rate: 20, durationSec: 1, concurrency: 1, maxInFlight: 2, maxRequests: 1000, prompts: PROMPTS });
      assert.equal(r.arrivals, 20);
      assert.equal(r.sent + r.dropped, 20);
      assert.equal(s.count, r.sent);
      assert.ok(s.maxInFlight <= 2, `stub saw ${s.maxInFlight} in flight`);
      // 2 slots, each busy ≥ 400 ms in a 1 s window: at most 6 can start (at 0, ~400, ~800 ms per slot).
      assert.ok(r.sent >= 2 && r.sent <= 6, `sent ${r.sent}`);
      assert.ok(r.dropped >= 14, `dropped ${r.dropped}`);
      assert.equal(r.ok, r.sent);
      assert.match(formatSummary(r), new RegExp(`${r.dropped} dropped of 20 arrivals`));
    } finally {
      await s.close();
    }
  });

  it('stops at maxRequests before the duration ends', async () => {
    const s = await startStub({ delayMs: 5 });
    try {
      const t0 = performance.now();
      const r = await runLoad({ url: s.url, scenario: 'open', rate: 50, durationSec: 20, maxInFlight: 5, maxRequests: 10, prompts: PROMPTS });
      assert.equal(r.sent, 10);
      assert.equal(s.count, 10);
      assert.equal(r.stoppedBy, 'requests');
      assert.ok(performance.now() - t0 < 180 + 5 + 3 * SLACK_MS);
    } finally {
      await s.close();
    }
  });
});

describe('runLoad, errors', () => {
  it('counts failures by kind: HTTP status, network', async () => {
    // Request n (arrival order) fails with 500 when n % 5 === 4, with 429 when n % 7 === 3.
    const failWith = (n: number): number | null => (n % 5 === 4 ? 500 : n % 7 === 3 ? 429 : null);
    const s = await startStub({ delayMs: 5, failWith });
    try {
      const r = await runLoad({ url: s.url, concurrency: 1, maxRequests: 30, durationSec: 30, prompts: PROMPTS, maxErrorRate: 0.5 });
      let e500 = 0;
      let e429 = 0;
      for (let n = 0; n < 30; n++) {
        const st = failWith(n);
        if (st === 500) e500++;
        if (st === 429) e429++;
      }
      assert.deepEqual(r.errors, { http_500: e500, http_429: e429 });
      assert.equal(r.failed, e500 + e429);
      assert.equal(r.ok, 30 - e500 - e429);
      assert.equal(r.errorRate, (e500 + e429) / 30);
      assert.match(r.errorSamples.http_500!, /HTTP 500: stub failure 500/);
      assert.equal(r.latencyMs.e2e!.count, r.ok);
      assert.equal(r.thresholdsPassed, true);
    } finally {
      await s.close();
    }

    // Nothing listens on a port we just freed: every request is a network error.
    const gone = await startStub();
    const url = gone.url;
    await gone.close();
    const r = await runLoad({ url, concurrency: 2, maxRequests: 4, durationSec: 10, prompts: PROMPTS });
    assert.deepEqual(r.errors, { network: 4 });
    assert.match(r.errorSamples.network!, /ECONNREFUSED/);
    assert.equal(r.thresholdsPassed, false, 'error rate 1 fails the default 1% threshold');
    assert.match(formatSummary(r), /thresholds: FAILED completion_errors rate<0.01/);
  });

  it('fails the p95 threshold as k6 would', async () => {
    const s = await startStub({ delayMs: 60 });
    try {
      const r = await runLoad({ url: s.url, maxRequests: 3, durationSec: 10, prompts: PROMPTS, p95Ms: 50 });
      assert.equal(r.thresholdsPassed, false);
      assert.deepEqual(
        r.thresholds.map((t) => [t.name, t.expression, t.passed]),
        [
          ['completion_e2e_ms', 'p(95)<50', false],
          ['completion_errors', 'rate<0.01', true],
        ],
      );
    } finally {
      await s.close();
    }
  });
});

describe('runLoad, requests', () => {
  it('sends model, prompt, max_tokens, temperature and extra fields; several models share the traffic round-robin', async () => {
    const s = await startStub({ delayMs: 1 });
    try {
      const r = await runLoad({
        url: s.url,
        model: ['dense', 'mop-0.4'],
        maxRequests: 6,
        durationSec: 10,
        maxTokens: 9,
        temperature: 0.5,
        ignoreEos: true,
        extraBody: { top_p: 0.8 },
        prompts: PROMPTS,
      });
      assert.equal(r.ok, 6);
      const bodies = [...s.bodies].sort((a, b) => PROMPTS.indexOf(a.prompt as string) - PROMPTS.indexOf(b.prompt as string));
      assert.equal(bodies.length, 6);
      for (const b of s.bodies) {
        assert.equal(b.max_tokens, 9);
        assert.equal(b.temperature, 0.5);
        assert.equal(b.ignore_eos, true);
        assert.equal(b.top_p, 0.8);
        assert.equal(b.stream, false);
      }
      assert.deepEqual(
        s.bodies.map((b) => `${String(b.model)}:${String(b.prompt)}`),
        ['dense:p0', 'mop-0.4:p1', 'dense:p2', 'mop-0.4:p0', 'dense:p1', 'mop-0.4:p2'],
      );
      assert.deepEqual(Object.keys(r.byModel), ['dense', 'mop-0.4']);
      assert.equal(r.byModel.dense!.sent, 3);
      assert.equal(r.byModel['mop-0.4']!.ok, 3);
      assert.match(formatSummary(r), /dense: 3\/3 ok/);
    } finally {
      await s.close();
    }
  });

  it('reads prompts from a file and draws the same seeded random order every run', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'prompts-'));
    const file = path.join(dir, 'p.txt');
    await fs.writeFile(file, '# a comment\nalpha\n\n  beta  \r\ngamma\ndelta\n');
    const s = await startStub({ delayMs: 1 });
    try {
      const run = async (): Promise<string[]> => {
        const start = s.bodies.length;
        await runLoad({ url: s.url, promptsFile: file, promptOrder: 'random', seed: 9, maxRequests: 12, durationSec: 10 });
        return s.bodies.slice(start).map((b) => b.prompt as string);
      };
      const a = await run();
      const b = await run();
      assert.deepEqual(a, b);
      assert.ok(a.every((p) => ['alpha', 'beta', 'gamma', 'delta'].includes(p)), a.join());
      assert.ok(new Set(a).size >= 3);
      const o = resolveLoadOptions({ url: s.url, promptOrder: 'random', seed: 9 });
      assert.deepEqual(
        a,
        Array.from({ length: 12 }, (_, i) => buildRequestBody(o, ['alpha', 'beta', 'gamma', 'delta'], i).prompt),
      );
    } finally {
      await s.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('returns a report that survives JSON', async () => {
    const s = await startStub({ delayMs: 1 });
    try {
      const r = await runLoad({ url: s.url, maxRequests: 2, durationSec: 10, prompts: PROMPTS });
      const back = JSON.parse(JSON.stringify(r)) as typeof r;
      assert.deepEqual(back, r);
      assert.equal(back.version, 1);
      assert.equal(back.endpoint, `${s.url}/v1/completions`);
    } finally {
      await s.close();
    }
  });
});

describe('runLoad, refusals', () => {
  it('refuses a non-loopback URL before connecting to anything', async () => {
    for (const url of ['http://10.0.0.1:8080', 'http://example.com', 'https://8.8.8.8', 'http://0.0.0.0:8080', 'http://127.0.0.1@evil.example/', 'http://[::2]:80']) {
      await assert.rejects(runLoad({ url, maxRequests: 1, durationSec: 1, prompts: PROMPTS }), NonLoopbackUrlError, url);
    }
    await assert.rejects(runLoad({ url: 'http://192.168.1.1', maxRequests: 1, durationSec: 1, prompts: PROMPTS }), /only loopback targets are allowed/);
  });

  it('accepts 127.0.0.0/8, localhost and [::1]', () => {
    for (const url of ['http://127.0.0.1:8080', 'http://127.9.8.7', 'http://localhost:3000', 'http://[::1]:8080', 'https://api.localhost']) {
      assert.doesNotThrow(() => assertLoopbackUrl(url), url);
    }
    assert.equal(isLoopbackHost('128.0.0.1'), false);
    assert.equal(isLoopbackHost('localhost.example.com'), false);
    assert.throws(() => assertLoopbackUrl('ftp://127.0.0.1'), /http/);
  });

  it('refuses unbounded or malformed options with the option named', async () => {
    const url = 'http://127.0.0.1:9';
    for (const [bad, re] of [
      [{ maxRequests: Number.POSITIVE_INFINITY }, /maxRequests/],
      [{ maxRequests: 0 }, /maxRequests/],
      [{ durationSec: Number.POSITIVE_INFINITY }, /durationSec/],
      [{ durationSec: 0 }, /durationSec/],
      [{ scenario: 'ramping' }, /scenario/],
      [{ rate: 0 }, /rate/],
      [{ concurrency: 1.5 }, /concurrency/],
      [{ extraBody: { stream: true } }, /extraBody may not set "stream"/],
      [{ prompts: [] }, /prompts/],
    ] as const) {
      await assert.rejects(runLoad({ url, ...(bad as object) }), (e: unknown) => e instanceof LoadConfigError && re.test((e as Error).message));
    }
  });
});
