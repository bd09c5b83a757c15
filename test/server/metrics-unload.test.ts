import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RequestHandle } from '../../src/runtime/engine/scheduler-types.ts';
import type { GenerationEvent } from '../../src/runtime/engine/sequence.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { ServerMetrics } from '../../src/server/metrics.ts';
import type { ServedVariant } from '../../src/service/variants/served-variant.ts';
import { parseMetrics, postJson, scrape, startTestServer, type Samples } from './helpers/server.ts';

const TOKEN = 'test-admin-token-metrics';
const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
// Small calibration, no recovery: a prune of the bundled model takes seconds.
const quick = { samples: 8, seq_len: 64, recovery: 'none' };

/** Sample keys that carry this model label. */
function seriesOf(m: Samples, model: string): string[] {
  return [...m.keys()].filter((k) => k.includes(`model="${model}"`));
}

describe('metrics of an unloaded variant', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ adminToken: TOKEN, maxBatch: 2 })));
  after(async () => s.close());

  async function prune(id: string): Promise<void> {
    const started = await fetch(`${s.url}/admin/prune`, { method: 'POST', headers: auth, body: JSON.stringify({ target: 0.3, strategy: 'width', id, activate: false, ...quick }) });
    assert.equal(started.status, 202, await started.clone().text());
    const job = (await started.json()) as { id: string };
    const until = Date.now() + 120_000;
    for (;;) {
      const view = (await (await fetch(`${s.url}/admin/prune/${job.id}`, { headers: auth })).json()) as { status: string };
      if (view.status !== 'running') return assert.equal(view.status, 'succeeded', JSON.stringify(view));
      assert.ok(Date.now() < until, 'prune still running after 120 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function complete(model: string): Promise<void> {
    const res = await postJson(`${s.url}/v1/completions`, { model, prompt: 'Once upon a time', max_tokens: 4, temperature: 0 });
    assert.equal(res.status, 200, await res.clone().text());
    await res.json();
  }

  it('removes every series labelled with the variant, and keeps the dense model’s', async () => {
    await prune('gone-30');
    await complete('gone-30');
    await complete('stories260K');
    const before = await scrape(s.url);
    assert.ok(before.get('mop_requests_total{model="gone-30",outcome="success"}') === 1);
    assert.ok(before.get('mop_request_success_total{finished_reason="length",model="gone-30"}') === 1);
    assert.ok(before.has('mop_e2e_request_latency_seconds_count{model="gone-30"}'));
    const denseBefore = seriesOf(before, 'stories260K');

    const del = await fetch(`${s.url}/admin/models/gone-30`, { method: 'DELETE', headers: auth });
    assert.equal(del.status, 200, await del.clone().text());

    const afterUnload = await scrape(s.url);
    assert.deepEqual(seriesOf(afterUnload, 'gone-30'), []);
    assert.deepEqual(seriesOf(afterUnload, 'stories260K').sort(), denseBefore.sort(), 'the dense model keeps every series');
    assert.equal(afterUnload.get('mop_requests_total{model="stories260K",outcome="success"}'), before.get('mop_requests_total{model="stories260K",outcome="success"}'));
  });

  it('keeps the series of a variant unloaded and added again under the same id before the scrape', async () => {
    await prune('again-30');
    await complete('again-30');
    const del = await fetch(`${s.url}/admin/models/again-30`, { method: 'DELETE', headers: auth });
    assert.equal(del.status, 200);
    await prune('again-30');
    await complete('again-30');
    const m = await scrape(s.url);
    assert.ok((m.get('mop_requests_total{model="again-30",outcome="success"}') ?? 0) >= 1, 'the re-added variant’s requests are counted');
    assert.ok(m.has('mop_model_parameters{model="again-30"}'));
  });
});

/** A handle whose events the test releases one at a time. */
function manualHandle(): { handle: RequestHandle; push(e: GenerationEvent): void; end(): void } {
  const queue: GenerationEvent[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  async function* events(): AsyncGenerator<GenerationEvent> {
    for (;;) {
      while (queue.length > 0) yield queue.shift()!;
      if (ended) return;
      await new Promise<void>((r) => (wake = r));
    }
  }
  const handle = { events: events(), submittedAt: performance.now(), admittedAt: performance.now() } as unknown as RequestHandle;
  return {
    handle,
    push: (e) => (queue.push(e), wake?.()),
    end: () => ((ended = true), wake?.()),
  };
}

describe('ServerMetrics.forgetModel', () => {
  const finish: GenerationEvent = { type: 'finish', reason: 'stop', text: '', promptTokens: 3, completionTokens: 1 };

  it('removes the model’s series at the next scrape, once none of its generations is still tracked', async () => {
    const metrics = new ServerMetrics(() => []);
    const h = manualHandle();
    const tracked = metrics.track('old', h.handle)[Symbol.asyncIterator]();
    h.push({ type: 'token', token: 1, text: 'a' });
    await tracked.next();
    metrics.countRequest('old', 'success');
    metrics.countRequest('kept', 'success');

    metrics.forgetModel('old');
    let m = parseMetrics((await metrics.render()).body);
    assert.ok(m.has('mop_requests_total{model="old",outcome="success"}'), 'a generation in flight keeps its model’s series');

    h.push(finish);
    h.end();
    while (!(await tracked.next()).done);
    m = parseMetrics((await metrics.render()).body);
    assert.deepEqual(seriesOf(m, 'old'), []);
    assert.equal(m.get('mop_requests_total{model="kept",outcome="success"}'), 1);

    // A request that settles after the sweep (it resolved the variant before the unload) is swept too.
    metrics.countRequest('old', 'aborted');
    m = parseMetrics((await metrics.render()).body);
    assert.deepEqual(seriesOf(m, 'old'), []);
  });

  it('keeps the series when the id is served again by the time of the scrape', async () => {
    let served: ServedVariant[] = [];
    const metrics = new ServerMetrics(() => served);
    metrics.countRequest('back', 'success');
    metrics.forgetModel('back');
    served = [{ id: 'back', parameters: 1, compressionRatio: 0, target: { device: 'cpu', dtype: 'float32' }, scheduler: { stats: () => ({ running: 0, waiting: 0, lastBatchSize: 0, kvTokensUsed: 0, kvTokensCapacity: 1 }) }, grammarFailures: () => ({}) } as unknown as ServedVariant];
    metrics.countRequest('back', 'success');
    let m = parseMetrics((await metrics.render()).body);
    assert.equal(m.get('mop_requests_total{model="back",outcome="success"}'), 2);
    // Served again means forgotten no more: a later scrape keeps them too.
    m = parseMetrics((await metrics.render()).body);
    assert.equal(m.get('mop_requests_total{model="back",outcome="success"}'), 2);
  });
});
