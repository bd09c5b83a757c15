import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, postJson, scrape, startTestServer, waitFor } from './helpers/server.ts';

const MODEL = 'model="stories260K"';

/** A long greedy generation that ignores EOS, so it runs until max_tokens or an abort. */
const long = (maxTokens: number, extra: Record<string, unknown> = {}) => ({ prompt: 'Once upon a time', max_tokens: maxTokens, temperature: 0, ignore_eos: true, ...extra });

/** Reads SSE `data:` payloads from a streaming response, one at a time. */
async function* sseData(res: Response): AsyncGenerator<string> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      assert.ok(event.startsWith('data: '), event);
      yield event.slice(6);
    }
  }
}

describe('health, readiness, metrics and aborts', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ maxBatch: 4 });
  });
  after(async () => server.close());

  it('answers /health and /ready once the probe generation succeeded', async () => {
    const health = await fetch(server.url + '/health');
    assert.equal(health.status, 200);
    const ready = await fetch(server.url + '/ready');
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready', model: 'stories260K' });
  });

  it('answers /ready and generation requests with 503 while draining', async () => {
    server.state.draining = true;
    try {
      await assertOpenAIError(await fetch(server.url + '/ready'), 503);
      const res = await postJson(server.url + '/v1/completions', long(4));
      await assertOpenAIError(res, 503);
      assert.equal((await fetch(server.url + '/health')).status, 200, 'alive while draining');
    } finally {
      server.state.draining = false;
    }
  });

  it('exposes /metrics whose histograms count the requests just made', async () => {
    const before = await scrape(server.url);
    const get = (m: Map<string, number>, key: string) => m.get(key) ?? 0;
    const prompts = ['Once upon a time', 'The cat', 'Tom had a red ball'];
    for (const prompt of prompts) assert.equal((await postJson(server.url + '/v1/completions', { prompt, max_tokens: 10, temperature: 0, ignore_eos: true })).status, 200);
    const streamed = await postJson(server.url + '/v1/completions', { prompt: 'The sun', max_tokens: 10, temperature: 0, ignore_eos: true, stream: true });
    await streamed.text();
    const now = await scrape(server.url);

    for (const h of ['mop_e2e_request_latency_seconds', 'mop_time_to_first_token_seconds', 'mop_request_queue_time_seconds', 'mop_request_prompt_tokens', 'mop_request_generation_tokens']) {
      assert.equal(get(now, `${h}_count{${MODEL}}`) - get(before, `${h}_count{${MODEL}}`), 4, h);
      assert.equal(get(now, `${h}_bucket{le="+Inf",${MODEL}}`), get(now, `${h}_count{${MODEL}}`), `${h} +Inf bucket`);
    }
    assert.equal(get(now, `mop_time_per_output_token_seconds_count{${MODEL}}`) - get(before, `mop_time_per_output_token_seconds_count{${MODEL}}`), 4 * 9);
    assert.equal(get(now, `mop_request_generation_tokens_sum{${MODEL}}`) - get(before, `mop_request_generation_tokens_sum{${MODEL}}`), 40);
    assert.equal(get(now, `mop_generation_tokens_total{${MODEL}}`) - get(before, `mop_generation_tokens_total{${MODEL}}`), 40);
    assert.ok(get(now, `mop_prompt_tokens_total{${MODEL}}`) - get(before, `mop_prompt_tokens_total{${MODEL}}`) >= 4 * 3);
    assert.equal(get(now, `mop_request_success_total{finished_reason="length",${MODEL}}`) - get(before, `mop_request_success_total{finished_reason="length",${MODEL}}`), 4);
    assert.equal(get(now, `mop_requests_total{${MODEL},outcome="success"}`) - get(before, `mop_requests_total{${MODEL},outcome="success"}`), 4);
    // Bucket bounds from sub-millisecond to minutes.
    assert.ok(now.has(`mop_time_to_first_token_seconds_bucket{le="0.0005",${MODEL}}`));
    assert.ok(now.has(`mop_time_to_first_token_seconds_bucket{le="300",${MODEL}}`));
    // Gauges, read from the scheduler at scrape time.
    assert.equal(now.get(`mop_num_requests_running{${MODEL}}`), 0);
    assert.equal(now.get(`mop_num_requests_waiting{${MODEL}}`), 0);
    assert.ok(now.has(`mop_batch_size{${MODEL}}`));
    assert.ok(now.has(`mop_kv_cache_usage_ratio{${MODEL}}`));
    assert.equal(now.get(`mop_model_parameters{${MODEL}}`), 260032);
    assert.equal(now.get(`mop_model_compression_ratio{${MODEL}}`), 0);
    assert.equal(now.get(`mop_model_info{device="cpu",dtype="float32",${MODEL}}`), 1);
    // Every series of ours carries the model label; process metrics come along.
    for (const key of now.keys()) if (key.startsWith('mop_') && !key.startsWith('mop_requests_total')) assert.match(key, /model="/, key);
    assert.ok([...now.keys()].some((k) => k.startsWith('process_cpu_user_seconds_total')));
  });

  it('frees the batch slot of a stream the client aborts', async () => {
    const before = await scrape(server.url);
    const ac = new AbortController();
    const res = await postJson(server.url + '/v1/completions', long(500, { stream: true }), { signal: ac.signal });
    assert.equal(res.status, 200);
    const events = sseData(res);
    await events.next();
    await events.next();
    // Stats come from the engine worker, pushed every 100 ms.
    await waitFor(() => server.service.active!.scheduler.stats().running === 1, 3000, 'the running count to reach 1');
    ac.abort();
    await events.return(undefined).catch(() => {});
    await waitFor(async () => (await scrape(server.url)).get(`mop_num_requests_running{${MODEL}}`) === 0, 3000, 'the running gauge to drop to 0');
    const now = await scrape(server.url);
    assert.equal((now.get(`mop_request_aborted_total{${MODEL}}`) ?? 0) - (before.get(`mop_request_aborted_total{${MODEL}}`) ?? 0), 1);
    const generated = (now.get(`mop_request_generation_tokens_sum{${MODEL}}`) ?? 0) - (before.get(`mop_request_generation_tokens_sum{${MODEL}}`) ?? 0);
    assert.ok(generated < 500, `generation stopped early (${generated} tokens)`);
    await waitFor(async () => (await scrape(server.url)).get(`mop_requests_total{${MODEL},outcome="aborted"}`) === 1, 3000, 'the aborted request to be counted');
  });

  it('aborts a non-streaming generation whose client disconnects', async () => {
    const before = await scrape(server.url);
    const ac = new AbortController();
    const pending = postJson(server.url + '/v1/completions', long(500), { signal: ac.signal }).catch((e: Error) => e);
    await waitFor(() => server.service.active!.scheduler.stats().running === 1, 3000, 'the request to start');
    ac.abort();
    assert.ok((await pending) instanceof Error);
    await waitFor(() => server.service.active!.scheduler.stats().running === 0, 3000, 'the slot to be freed');
    const now = await scrape(server.url);
    assert.equal((now.get(`mop_request_aborted_total{${MODEL}}`) ?? 0) - (before.get(`mop_request_aborted_total{${MODEL}}`) ?? 0), 1);
  });
});

describe('a full request queue', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ maxBatch: 1, maxQueue: 1 });
  });
  after(async () => server.close());

  it('answers 429 with Retry-After instead of queueing without bound, then recovers', async () => {
    const ac = new AbortController();
    const running = await postJson(server.url + '/v1/completions', long(500, { stream: true }), { signal: ac.signal });
    const events = sseData(running);
    await events.next(); // holds the only slot now
    const burst = await Promise.all(Array.from({ length: 4 }, () => postJson(server.url + '/v1/completions', long(200), { signal: ac.signal }).catch((e: Error) => e)));
    const rejected = burst.filter((r): r is Response => r instanceof Response && r.status === 429);
    assert.ok(rejected.length >= 1, `statuses: ${burst.map((r) => (r instanceof Response ? r.status : r.message))}`);
    for (const r of rejected) {
      assert.equal(r.headers.get('retry-after'), '1');
      const e = await assertOpenAIError(r, 429);
      assert.equal(e.code, 'queue_full');
    }
    ac.abort();
    await events.return(undefined).catch(() => {});
    await waitFor(() => server.service.active!.scheduler.stats().running + server.service.active!.scheduler.stats().waiting === 0, 5000, 'the queue to empty');
    const m = await scrape(server.url);
    assert.ok((m.get(`mop_requests_total{${MODEL},outcome="rejected"}`) ?? 0) >= 1);
    const ok = await postJson(server.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 4, temperature: 0 });
    assert.equal(ok.status, 200);
  });
});

describe('graceful shutdown', () => {
  it('lets a streaming request finish when close() is called mid-stream, then stops listening', async () => {
    const server = await startTestServer({ maxBatch: 2 });
    const res = await postJson(server.url + '/v1/completions', long(300, { stream: true, stream_options: { include_usage: true } }));
    const events = sseData(res);
    await events.next();
    const closed = server.close();
    assert.equal(server.state.draining, true);
    const refused = await postJson(server.url + '/v1/completions', long(4)).catch((e: Error) => e);
    if (refused instanceof Response) await assertOpenAIError(refused, 503);
    let finish: string | null = null;
    let usage: { completion_tokens: number } | undefined;
    let done = false;
    for await (const data of events) {
      if (data === '[DONE]') {
        done = true;
        continue;
      }
      const chunk = JSON.parse(data) as { choices: { finish_reason: string | null }[]; usage?: { completion_tokens: number } | null };
      if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.ok(done, 'the stream ended with [DONE]');
    assert.equal(finish, 'length');
    assert.equal(usage?.completion_tokens, 300);
    await closed;
    await assert.rejects(fetch(server.url + '/health'), 'the socket is closed');
  });
});

describe('the per-request timeout', () => {
  it("ends a generation that runs past it with finish_reason 'timeout' and keeps what was generated", async () => {
    const server = await startTestServer({ requestTimeoutMs: 100 });
    try {
      const res = await postJson(server.url + '/v1/completions', long(500));
      assert.equal(res.status, 200);
      const body = (await res.json()) as { choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number } };
      assert.equal(body.choices[0]!.finish_reason, 'timeout');
      assert.ok(body.usage.completion_tokens < 500, `${body.usage.completion_tokens} tokens`);
      assert.ok(body.choices[0]!.text.startsWith(', there'), body.choices[0]!.text);
      const m = await scrape(server.url);
      assert.equal(m.get(`mop_requests_total{${MODEL},outcome="timeout"}`), 1);
      assert.equal(m.get(`mop_request_success_total{finished_reason="timeout",${MODEL}}`), 1);
    } finally {
      await server.close();
    }
  });
});
