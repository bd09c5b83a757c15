/**
 * Engine workers as a unit of failure, over real HTTP: a worker that dies fails only the requests
 * it held (503 in OpenAI's shape), is restarted, and serves again; a variant whose worker keeps
 * dying is marked unavailable while the other variants keep serving; a prune that fails inside its
 * worker fails its job with the reason and leaves serving untouched.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { faultEngineWorker, injectEngineFault } from '../../scripts/faults/inject.ts';
import { assertOpenAIError, postJson, startTestServer, waitFor } from '../server/helpers/server.ts';
import { waitForPruneJobs } from '../server/helpers/prune-jobs.ts';

const TOKEN = 'engine-fault-admin-token';
const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

const admin = (s: RunningServer, method: string, path: string, body?: unknown) =>
  fetch(s.url + '/admin' + path, { method, headers: auth, ...(body !== undefined && { body: JSON.stringify(body) }) });

const complete = (s: RunningServer, model: string | undefined, maxTokens = 8, signal?: AbortSignal) =>
  postJson(s.url + '/v1/completions', { ...(model && { model }), prompt: 'Once upon a time', max_tokens: maxTokens, temperature: 0, ignore_eos: true }, signal ? { signal } : {});

async function ready(s: RunningServer): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(s.url + '/ready');
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('an engine worker that dies', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ adminToken: TOKEN, maxBatch: 2, engineRestarts: 3 })));
  after(async () => s.close());

  it('fails the requests it held with 503, is restarted, and serves again', async () => {
    const held = complete(s, undefined, 400);
    await waitFor(() => s.service.active!.scheduler.stats().running === 1, 5000, 'the long request to hold a slot');
    const restarted = await admin(s, 'POST', '/models/stories260K/restart');
    assert.equal(restarted.status, 202);
    const err = await assertOpenAIError(await held, 503);
    assert.equal(err.code, 'model_unavailable');
    assert.match(err.message, /stories260K.*stopped/);
    await waitFor(async () => (await ready(s)).status === 200 && s.service.active!.status === 'serving', 30_000, 'the engine to be restarted');
    const again = await complete(s, undefined);
    assert.equal(again.status, 200);
    const body = (await again.json()) as { choices: { text: string }[] };
    assert.ok(body.choices[0]!.text.length > 0);
  });

  it('ends a stream it held with an error event in OpenAI shape, then [DONE]', async () => {
    const res = await postJson(s.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 400, temperature: 0, ignore_eos: true, stream: true });
    assert.equal(res.status, 200);
    await waitFor(() => s.service.active!.scheduler.stats().running === 1, 5000, 'the stream to hold a slot');
    await admin(s, 'POST', '/models/stories260K/restart');
    const text = await res.text();
    const frames = text.split('\n\n').filter(Boolean).map((f) => f.replace(/^data: /, ''));
    assert.equal(frames.at(-1), '[DONE]');
    const error = JSON.parse(frames.at(-2)!) as { error: { code: string; message: string } };
    assert.equal(error.error.code, 'model_unavailable');
    await waitFor(async () => (await complete(s, undefined)).status === 200, 30_000, 'the restarted engine to answer');
  });
});

describe('a variant whose engine keeps dying', () => {
  let s: RunningServer;
  before(async () => {
    s = await startTestServer({ adminToken: TOKEN, maxBatch: 2, engineRestarts: 0 }, { engineWorker: faultEngineWorker });
    const started = await admin(s, 'POST', '/prune', { target: 0.2, samples: 8, seq_len: 64, recovery: 'none', id: 'small', activate: false });
    assert.equal(started.status, 202, await started.clone().text());
    await waitForPruneJobs(s.service.jobs);
    assert.ok(s.service.has('small'));
  });
  after(async () => s.close());

  it('is marked unavailable (503 for its requests) while the other variants keep serving and /ready stays 200', async () => {
    assert.equal((await complete(s, 'small')).status, 200);
    injectEngineFault({ variant: 'small', action: 'crash' });
    await waitFor(() => s.service.get('small')!.status === 'unavailable', 10_000, 'the variant to be given up on');
    const err = await assertOpenAIError(await complete(s, 'small'), 503);
    assert.equal(err.code, 'model_unavailable');
    assert.equal((await complete(s, 'stories260K')).status, 200);
    assert.equal((await complete(s, undefined)).status, 200);
    const r = await ready(s);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.unavailable, [{ id: 'small', status: 'unavailable', reason: s.service.get('small')!.statusReason }]);
    const models = (await (await admin(s, 'GET', '/models')).json()) as { data: { id: string; status: string }[] };
    assert.equal(models.data.find((m) => m.id === 'small')!.status, 'unavailable');
    const activate = await admin(s, 'POST', '/models/small/activate');
    assert.equal(activate.status, 409);
    assert.equal(s.service.active!.id, 'stories260K');
  });

  it('fails a prune whose worker fails after starting, with the reason, and keeps serving', async () => {
    // A variant already at 20% cannot be pruned to 10%: MoP finds out inside the prune worker.
    const second = await admin(s, 'POST', '/prune', { target: 0.1, samples: 8, seq_len: 64, recovery: 'none', source: 'small', strategy: 'width' });
    // 'small' is unavailable but its weights are still there: pruning it further is allowed and fails in the worker.
    assert.equal(second.status, 202);
    const job = (await second.json()) as { id: string };
    await waitForPruneJobs(s.service.jobs);
    const view = (await (await admin(s, 'GET', `/prune/${job.id}`)).json()) as { status: string; error: string };
    assert.equal(view.status, 'failed');
    assert.match(view.error, /already at 20\.\d% compression/);
    assert.equal((await complete(s, undefined)).status, 200);
  });

  it('takes /ready out of rotation when the active variant is the one that is unavailable', async () => {
    injectEngineFault({ variant: 'stories260K', action: 'crash' });
    await waitFor(() => s.service.get('stories260K')!.status === 'unavailable', 10_000, 'the dense variant to be given up on');
    const r = await ready(s);
    assert.equal(r.status, 503);
    assert.match(String((r.body as { error: { message: string } }).error.message), /stories260K.*unavailable/);
  });
});

describe('a prune worker that runs out of memory', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ adminToken: TOKEN, maxBatch: 2, pruneHeapMb: 6 })));
  after(async () => s.close());

  it('fails the prune with the reason while the server keeps serving', async () => {
    const res = await admin(s, 'POST', '/prune', { target: 0.2, samples: 8, seq_len: 64 });
    const err = await assertOpenAIError(res, 500);
    assert.equal(err.code, 'prune_worker_failed');
    assert.match(err.message, /out of memory/);
    assert.equal(s.service.list().length, 1, 'no variant was added');
    assert.equal((await complete(s, undefined)).status, 200);
    assert.equal((await ready(s)).status, 200);
    // The next prune is not blocked by the failed one.
    assert.notEqual((await admin(s, 'POST', '/prune', { target: 0.2, samples: 8, seq_len: 64 })).status, 409);
  });
});
