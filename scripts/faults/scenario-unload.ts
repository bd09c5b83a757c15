/**
 * Unloading a variant while requests run on it: a second variant ('victim') is added by a small
 * prune (the model store the two unload scenarios share makes the second one a store hit), load
 * runs on it, and `DELETE /admin/models/victim` comes in the middle. Requests in flight must end
 * (finished within the grace period, or an error event), later ones get 404 model_not_found, and
 * the dense model serves on.
 */
import { neverAnswered, type Outcome, type RequestSpec, send } from './client.ts';
import { ClosedLoop } from './closed-loop.ts';
import { adminRequest, type FaultSettings, mibOf, QUICK_PRUNE, type ScenarioDef, type ScenarioRecord, scoringRequest, sleep, streamRequest } from './harness.ts';
import { tally } from './report.ts';
import type { ServerChild } from './server-child.ts';

const VICTIM = 'victim';

/** Start a prune job and poll it (bounded); the job's final view. */
export async function pruneJob(server: ServerChild, s: FaultSettings, body: Record<string, unknown>): Promise<{ accepted: Outcome; job: { id?: string; status?: string; error?: string | null } | null; seconds: number }> {
  const t0 = performance.now();
  const accepted = await send(server.url, adminRequest(s, 'POST', '/prune', body));
  if (accepted.status !== 202) return { accepted, job: null, seconds: (performance.now() - t0) / 1000 };
  const id = (JSON.parse(accepted.text ?? '{}') as { id: string }).id;
  for (;;) {
    await sleep(500);
    const view = await fetch(`${server.url}/admin/prune/${id}`, { headers: { authorization: `Bearer ${s.adminToken}` }, signal: AbortSignal.timeout(s.statusWaitMs) }).then(
      (r) => r.json() as Promise<{ id: string; status: string; error: string | null }>,
      () => null,
    );
    if (view && view.status !== 'running') return { accepted, job: view, seconds: (performance.now() - t0) / 1000 };
    if (performance.now() - t0 > s.pruneWaitMs) {
      await send(server.url, adminRequest(s, 'DELETE', `/prune/${id}`));
      return { accepted, job: view, seconds: (performance.now() - t0) / 1000 };
    }
  }
}

async function unloadUnderLoad(server: ServerChild, s: FaultSettings, record: ScenarioRecord, what: string, make: (i: number) => RequestSpec): Promise<void> {
  const prune = await pruneJob(server, s, { ...QUICK_PRUNE, id: VICTIM, activate: false });
  if (prune.job?.status !== 'succeeded') throw new Error(`the victim variant could not be made: POST /admin/prune ${prune.accepted.status} ${prune.accepted.code ?? ''}, job ${JSON.stringify(prune.job)}`);
  record.notes.push(`(bench) victim variant made by a prune in ${prune.seconds.toFixed(1)} s`);
  const rssLoaded = mibOf(server.rssBytes());
  const load = new ClosedLoop(server.url, { concurrency: s.concurrency, maxRequests: 10_000, maxMs: s.warmMs + s.observeMs + 2 * s.endWaitMs + s.graceMs, request: (i) => make(i) });
  await sleep(s.warmMs);
  const at = performance.now();
  const unload = await send(server.url, adminRequest(s, 'DELETE', `/models/${VICTIM}`));
  const answeredAt = performance.now();
  await sleep(s.observeMs);
  const outcomes = await load.stop();
  const dense = await Promise.all(Array.from({ length: 2 }, (_, i) => send(server.url, streamRequest(s, i))));
  const inFlight = outcomes.filter((o) => o.atMs < at && o.atMs + o.ms >= at);
  const between = outcomes.filter((o) => o.atMs >= at && o.atMs < answeredAt);
  const after = outcomes.filter((o) => o.atMs >= answeredAt);
  record.rows.push(
    tally(`${what} on '${VICTIM}' before the unload`, outcomes.filter((o) => o.atMs + o.ms < at)),
    tally(`in flight at the DELETE`, inFlight),
    tally('sent while the DELETE ran', between),
    tally('sent after the DELETE answered', after),
    tally('DELETE /admin/models/victim', [unload]),
    tally('dense model streams after', dense),
  );
  const rssAfter = mibOf(server.rssBytes());
  record.notes.push(`(bench) server RSS: ${rssLoaded?.toFixed(0) ?? '–'} MiB with the victim loaded, ${rssAfter?.toFixed(0) ?? '–'} MiB after its unload`);
  const ended = (o: Outcome) => o.end === 'finish' || o.end === 'error-event' || o.end === 'body';
  const lateOk = after.filter((o) => o.status === 404 && o.code === 'model_not_found').length;
  record.checks.push(
    { what: 'DELETE is answered 200', ok: unload.status === 200, seen: `${unload.status || unload.end}${unload.code ? ' ' + unload.code : ''} after ${Math.round(unload.ms)} ms` },
    { what: 'requests in flight at the DELETE end (finished, or an error event), none cut or hanging', ok: inFlight.every(ended), seen: `${inFlight.filter(ended).length} of ${inFlight.length}: ${[...new Set(inFlight.map((o) => o.end + (o.code ? ' ' + o.code : '')))].join(', ') || '–'}` },
    { what: 'requests after it get 404 model_not_found', ok: lateOk === after.length, seen: `${lateOk} of ${after.length}` },
    { what: 'the dense model serves after the unload', ok: dense.every((o) => o.end === 'finish'), seen: `${dense.filter((o) => o.end === 'finish').length} of ${dense.length}` },
    { what: 'no request hung', ok: ![...outcomes, unload, ...dense].some(neverAnswered), seen: `${[...outcomes, unload, ...dense].filter(neverAnswered).length} never answered` },
  );
}

const storeArgs = (s: FaultSettings) => ['--model-store', s.storeDir];

export const unloadGenerationScenario: ScenarioDef = {
  id: 'unload-generation',
  title: 'Unload during generation',
  procedure: (s) => `A variant '${VICTIM}' is added by a small prune (\`${JSON.stringify(QUICK_PRUNE)}\`, not activated; a model store shared by the unload scenarios). Streaming completions name it, ${s.concurrency} at a time, ${s.maxTokens} tokens; after ${s.warmMs / 1000} s, \`DELETE /admin/models/${VICTIM}\`; watched ${s.observeMs / 1000} s more (grace ${s.graceMs / 1000} s).`,
  entry: 'mop serve',
  serverArgs: storeArgs,
  body: (server, s, record) => unloadUnderLoad(server, s, record, 'streams', (i) => streamRequest(s, i, { model: VICTIM })),
};

export const unloadScoringScenario: ScenarioDef = {
  id: 'unload-scoring',
  title: 'Unload during scoring',
  procedure: (s) => `As unload-generation, with prompt-scoring requests (\`echo: true, logprobs: 1, max_tokens: 0\`) on '${VICTIM}', ${s.concurrency} at a time.`,
  entry: 'mop serve',
  serverArgs: storeArgs,
  body: (server, s, record) => unloadUnderLoad(server, s, record, 'scoring', (i) => scoringRequest(s, i, { model: VICTIM })),
};
