import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { defaultServerConfig } from '../../src/server/config.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, postJson, scrape, startTestServer } from './helpers/server.ts';
import { waitForPruneJobs } from './helpers/prune-jobs.ts';

const TOKEN = 'test-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };
// Small calibration and no recovery fine-tuning (on by default; prune-recovery.test.ts covers it)
// so a prune of the bundled model takes seconds, not minutes.
const quick = { samples: 8, seq_len: 64, recovery: 'none' };

function admin(s: RunningServer, method: string, path: string, body?: unknown, headers: Record<string, string> = auth): Promise<Response> {
  return fetch(s.url + path, { method, headers: { 'content-type': 'application/json', ...headers }, ...(body !== undefined && { body: JSON.stringify(body) }) });
}

async function waitForJob(s: RunningServer, id: string): Promise<{ status: string; variant: string | null; report?: { result: { ratio: number } } }> {
  const end = Date.now() + 120_000;
  for (;;) {
    const job = (await (await admin(s, 'GET', `/admin/prune/${id}`)).json()) as { status: string; variant: string | null };
    if (job.status !== 'running') return job;
    if (Date.now() > end) throw new Error(`job ${id} still running`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function completion(s: RunningServer, model?: string): Promise<Response> {
  return postJson(`${s.url}/v1/completions`, { ...(model && { model }), prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
}

/** Open /admin/events; resolves with the socket, or rejects with the refused status. */
function openEvents(s: RunningServer, headers: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(s.url.replace('http', 'ws') + '/admin/events', { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

describe('admin API without a configured token', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer()));
  after(async () => s.close());

  it('is off: every admin route answers 404 and the event socket is refused', async () => {
    for (const [method, path] of [['POST', '/admin/prune'], ['GET', '/admin/models'], ['GET', '/admin/prune/prune-1']]) {
      const err = await assertOpenAIError(await admin(s, method!, path!, method === 'POST' ? { target: 0.2 } : undefined), 404);
      assert.equal(err.code, 'admin_disabled');
    }
    await assert.rejects(openEvents(s, auth), /status 404/);
  });
});

describe('admin API', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ adminToken: TOKEN, maxBatch: 4 })));
  after(async () => s.close());

  it('refuses a missing or wrong token on every route and on the event socket (401)', async () => {
    const routes: [string, string, unknown?][] = [
      ['POST', '/admin/prune', { target: 0.2 }],
      ['GET', '/admin/prune'],
      ['GET', '/admin/prune/prune-1'],
      ['DELETE', '/admin/prune/prune-1'],
      ['GET', '/admin/models'],
      ['POST', '/admin/models/stories260K/activate'],
      ['DELETE', '/admin/models/stories260K'],
    ];
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }] as Record<string, string>[]) {
      for (const [method, path, body] of routes) {
        const res = await admin(s, method, path, body, headers);
        assert.equal(res.headers.get('www-authenticate'), 'Bearer');
        await assertOpenAIError(res, 401);
      }
      await assert.rejects(openEvents(s, headers), /status 401/);
    }
    assert.equal(s.service.list().length, 1, 'nothing changed');
  });

  it('rejects bad prune requests with clear 400s and keeps serving', async () => {
    const cases: [unknown, RegExp][] = [
      [{ target: 0 }, /target: expected a fraction in \(0, 0\.9\], got 0/],
      [{ target: 0.95 }, /target: expected a fraction/],
      [{ target: 0.3, strategy: 'random' }, /unknown strategy 'random'/],
      [{ target: 0.3, criterion: 'bleu' }, /unknown criterion 'bleu'/],
      [{ target: 0.3, calibration: '/nonexistent/calib.txt' }, /calib/],
      [{ target: 0.3, samples: 4096, seq_len: 512 }, /tokens|too short/],
      [{ target: '0.3' }, /target/],
      [{ target: 0.3, bogus: 1 }, /bogus|unrecognized/i],
      [{ target: 0.3, width_multiple: 0 }, /width_multiple: expected an integer in \[1, 1024\], got 0/],
      [{ target: 0.3, width_multiple: '8' }, /width_multiple: expected an integer/],
      [{ target: 0.3, budget: 'fast' }, /unknown budget 'fast'; choose one of: params, latency/],
    ];
    for (const [body, message] of cases) {
      const err = await assertOpenAIError(await admin(s, 'POST', '/admin/prune', body), 400);
      assert.match(err.message, message, JSON.stringify(body));
    }
    const ok = await completion(s);
    assert.equal(ok.status, 200);
  });

  it('prunes, registers and activates the result while requests keep succeeding (hot swap)', async () => {
    const ws = await openEvents(s, auth);
    const events: { type: string; job?: { status: string }; active?: string }[] = [];
    ws.on('message', (m) => events.push(JSON.parse(String(m))));

    const started = await admin(s, 'POST', '/admin/prune', { target: 0.3, strategy: 'mop', ...quick });
    assert.equal(started.status, 202);
    const job = (await started.json()) as { id: string; status: string };
    assert.equal(job.status, 'running');
    assert.equal(started.headers.get('location'), `/admin/prune/${job.id}`);

    // A second prune while one runs is a conflict.
    const second = await assertOpenAIError(await admin(s, 'POST', '/admin/prune', { target: 0.2, ...quick }), 409);
    assert.equal(second.code, 'prune_in_progress');

    // Traffic during the job and across the swap: bounded, 4 concurrent clients, none may fail.
    const served = new Set<string>();
    let failures = 0;
    let stop = false;
    const client = async () => {
      for (let i = 0; i < 200 && !stop; i++) {
        const res = await completion(s);
        if (res.status !== 200) failures++;
        else served.add(((await res.json()) as { model: string }).model);
      }
    };
    const clients = Promise.all([client(), client(), client(), client()]);
    const done = await waitForJob(s, job.id);
    // Keep traffic going after the swap until the new variant has answered (bounded: 10 s).
    const until = Date.now() + 10_000;
    while (!served.has('mop-30') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    stop = true;
    await clients;

    assert.equal(done.status, 'succeeded', JSON.stringify(done));
    assert.equal(done.variant, 'mop-30');
    assert.ok(Math.abs(done.report!.result.ratio - 0.3) <= 0.005, `ratio ${done.report!.result.ratio}`);
    assert.equal(failures, 0);
    assert.ok(served.has('stories260K') && served.has('mop-30'), `served by ${[...served]}`);

    const models = (await (await fetch(`${s.url}/v1/models`)).json()) as { data: { id: string; compression_ratio: number }[] };
    assert.deepEqual(models.data.map((m) => m.id).sort(), ['mop-30', 'stories260K']);
    const listed = (await (await admin(s, 'GET', '/admin/models')).json()) as { active: string };
    assert.equal(listed.active, 'mop-30');
    const res = (await (await completion(s)).json()) as { model: string };
    assert.equal(res.model, 'mop-30', 'requests without a model get the active variant');
    const dense = (await (await completion(s, 'stories260K')).json()) as { model: string; choices: { text: string }[] };
    assert.equal(dense.model, 'stories260K', 'the dense variant stays servable by name');
    assert.equal(dense.choices[0]!.text, ', there was a little girl');

    ws.close();
    assert.ok(events.some((e) => e.type === 'job' && e.job!.status === 'running'));
    assert.ok(events.some((e) => e.type === 'job' && e.job!.status === 'succeeded'));
    assert.ok(events.some((e) => e.type === 'active_changed' && e.active === 'mop-30'));

    const m = await scrape(s.url);
    assert.equal(m.get('mop_prune_job_duration_seconds_count{status="succeeded",strategy="mop"}'), 1);
    assert.ok((m.get('mop_prune_iterations_total{branch="width",strategy="mop"}') ?? 0) + (m.get('mop_prune_iterations_total{branch="depth",strategy="mop"}') ?? 0) >= 1);
    assert.equal(m.get('mop_model_compression_ratio{model="mop-30"}'), done.report!.result.ratio);
  });

  it('cannot cancel a finished job (409) but cancels a running one', async () => {
    const jobs = (await (await admin(s, 'GET', '/admin/prune')).json()) as { data: { id: string; status: string }[] };
    const finished = jobs.data.find((j) => j.status === 'succeeded')!;
    const err = await assertOpenAIError(await admin(s, 'DELETE', `/admin/prune/${finished.id}`), 409);
    assert.equal(err.code, 'job_finished');

    const started = (await (await admin(s, 'POST', '/admin/prune', { target: 0.5, strategy: 'width', samples: 32, seq_len: 128, activate: false })).json()) as { id: string };
    const cancelled = await admin(s, 'DELETE', `/admin/prune/${started.id}`);
    assert.equal(cancelled.status, 200);
    assert.equal(((await cancelled.json()) as { status: string }).status, 'cancelled');
    assert.equal(s.service.list().length, 2, 'a cancelled job registers nothing');
    await assertOpenAIError(await admin(s, 'GET', '/admin/prune/prune-999'), 404);
  });

  it('splits a share of default traffic to another variant for an A/B test', async () => {
    const served = async (n: number) => {
      const counts: Record<string, number> = {};
      for (let i = 0; i < n; i++) {
        const m = ((await (await completion(s)).json()) as { model: string }).model;
        counts[m] = (counts[m] ?? 0) + 1;
      }
      return counts;
    };
    await assertOpenAIError(await admin(s, 'PUT', '/admin/split', { variant: 'nope', share: 0.5 }), 404);
    await assertOpenAIError(await admin(s, 'PUT', '/admin/split', { variant: 'stories260K', share: 1.5 }), 400, 'share');
    let k = 0;
    s.service.random = () => [0.1, 0.9][k++ % 2]!; // alternate: inside, outside the share
    const put = await admin(s, 'PUT', '/admin/split', { variant: 'stories260K', share: 0.5 });
    assert.deepEqual(await put.json(), { split: { variant: 'stories260K', share: 0.5 } });
    assert.deepEqual(await served(6), { 'stories260K': 3, 'mop-30': 3 });
    assert.equal(((await (await completion(s, 'mop-30')).json()) as { model: string }).model, 'mop-30', 'a named model is never split');
    assert.equal((await admin(s, 'DELETE', '/admin/split')).status, 200);
    assert.deepEqual(await served(2), { 'mop-30': 2 });
    s.service.random = Math.random;
  });

  it('rolls back by activating the dense model, and unloads a variant only when it is not active', async () => {
    const active = await assertOpenAIError(await admin(s, 'DELETE', '/admin/models/mop-30'), 409);
    assert.equal(active.code, 'model_active');
    const back = await admin(s, 'POST', '/admin/models/stories260K/activate');
    assert.equal(back.status, 200);
    assert.equal(((await (await completion(s)).json()) as { model: string }).model, 'stories260K');
    const gone = await admin(s, 'DELETE', '/admin/models/mop-30');
    assert.equal(gone.status, 200);
    await assertOpenAIError(await completion(s, 'mop-30'), 404);
    await assertOpenAIError(await admin(s, 'POST', '/admin/models/mop-30/activate'), 404);
  });
});

describe('start-up prune', () => {
  it('serves the dense model at once, then switches to the pruned variant when the job is done', async () => {
    const s = await startTestServer({ pruneTarget: 0.2, prune: { ...defaultServerConfig.prune, samples: 8, seqLen: 64, recovery: 'none' } });
    try {
      assert.equal(s.state.ready, true, 'ready before the prune finishes');
      assert.equal(s.service.jobs.list().length, 1);
      await waitForPruneJobs(s.service.jobs);
      assert.equal(s.service.jobs.list()[0]!.status, 'succeeded');
      assert.equal(s.service.active?.id, 'mop-20');
      assert.equal(((await (await completion(s)).json()) as { model: string }).model, 'mop-20');
      assert.ok(s.service.has('stories260K'), 'the dense variant stays loaded for comparison');
    } finally {
      await s.close();
    }
  });

  it('refuses to start with a calibration file that does not exist', async () => {
    await assert.rejects(startTestServer({ pruneTarget: 0.2, prune: { ...defaultServerConfig.prune, calibration: '/nonexistent/calib.txt' } }), { name: 'MopInputError', message: /calib/ });
  });
});
