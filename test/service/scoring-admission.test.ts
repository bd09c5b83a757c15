/**
 * Prompt scoring (echo + logprobs + max_tokens 0) goes through the same admission as generation:
 * the queue limit (429 with Retry-After), the request deadline, abort on client disconnect, and
 * drain at shutdown — every request answered, none left waiting on a released engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { parseMetrics, postJson, startTestServer, waitFor } from '../server/helpers/server.ts';

// Long enough that, scored 4 tokens a step, one scoring takes many scheduling steps.
const LONG_PROMPT = Array.from({ length: 40 }, () => 'Once upon a time there was a cat.').join(' ');
const score = (s: RunningServer, init: RequestInit = {}) => postJson(s.url + '/v1/completions', { prompt: LONG_PROMPT, max_tokens: 0, echo: true, logprobs: 1 }, init);

describe('a scoring flood beyond --max-queue', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ maxQueue: 4, maxBatch: 2, prefillChunk: 4 })));
  after(async () => s.close());

  it('gets 429 with Retry-After for what does not fit, and every request is answered', async () => {
    const answers = await Promise.all(Array.from({ length: 32 }, () => score(s)));
    const statuses = answers.map((r) => r.status);
    const rejected = answers.filter((r) => r.status === 429);
    assert.ok(rejected.length > 0, `expected 429s, got ${statuses.join(',')}`);
    assert.ok(statuses.every((st) => st === 200 || st === 429), statuses.join(','));
    for (const r of rejected) assert.equal(r.headers.get('retry-after'), '1');
    // At most one scoring running and four waiting were ever accepted together.
    assert.ok(statuses.filter((st) => st === 200).length >= 5);
    await Promise.all(answers.map((r) => r.arrayBuffer()));
    const m = parseMetrics(await (await fetch(s.url + '/metrics')).text());
    assert.equal(m.get('mop_requests_total{model="stories260K",outcome="rejected"}'), rejected.length);
    assert.equal(m.get('mop_requests_total{model="stories260K",outcome="success"}'), 32 - rejected.length);
  });

  it('frees the queue when scoring clients go away', async () => {
    const controllers = Array.from({ length: 5 }, () => new AbortController());
    const gone = controllers.map((ac) => score(s, { signal: ac.signal }).catch(() => undefined));
    await waitFor(() => s.service.active!.scheduler.stats().waiting === 4, 5000, 'four scorings to wait');
    for (const ac of controllers) ac.abort();
    await Promise.all(gone);
    await waitFor(() => s.service.active!.scheduler.stats().waiting === 0, 5000, 'the abandoned scorings to leave the queue');
    assert.equal((await score(s)).status, 200);
  });
});

describe('a scoring past the request deadline', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ prefillChunk: 1, requestTimeoutMs: 50 })));
  after(async () => s.close());

  it('is answered 503 request_timeout and counted as a timeout', async () => {
    const res = await score(s);
    const body = (await res.json()) as { error: { code: string } };
    assert.equal(res.status, 503);
    assert.equal(body.error.code, 'request_timeout');
    const m = parseMetrics(await (await fetch(s.url + '/metrics')).text());
    assert.equal(m.get('mop_requests_total{model="stories260K",outcome="timeout"}'), 1);
  });
});

describe('scorings caught by shutdown', () => {
  it('are all answered within the grace period, none left hanging on the released engine', async () => {
    const s = await startTestServer({ prefillChunk: 1, shutdownGraceMs: 300, maxQueue: 16 });
    const answers = Array.from({ length: 4 }, () => score(s).then(async (r) => ({ status: r.status, body: await r.text() })));
    await waitFor(() => s.service.active!.scheduler.stats().waiting >= 3, 5000, 'the scorings to be queued');
    const t0 = Date.now();
    await s.close();
    const settled = await Promise.race([Promise.all(answers), new Promise<'hung'>((r) => setTimeout(() => r('hung'), 15_000))]);
    assert.notEqual(settled, 'hung', 'a scoring request was never answered');
    for (const a of settled as { status: number; body: string }[]) assert.ok(a.status === 200 || a.status === 503, `${a.status} ${a.body}`);
    assert.ok(Date.now() - t0 < 10_000);
  });
});
