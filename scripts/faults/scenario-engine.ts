/**
 * Engine faults under closed-loop streaming load: the engine worker crashes (injected), is
 * restarted by an operator (POST /admin/models/{id}/restart), or stalls (its thread blocked, as a
 * hung ONNX Runtime call). Each measures how the requests in flight and those that follow end, how
 * soon the fault shows (first 503, /ready, /health), and whether serving comes back.
 */
import { neverAnswered, type Outcome, send } from './client.ts';
import { ClosedLoop } from './closed-loop.ts';
import { adminRequest, type FaultSettings, firstAfter, type ScenarioDef, type ScenarioRecord, sleep, streamRequest } from './harness.ts';
import { Probes } from './probes.ts';
import { tally } from './report.ts';
import type { ServerChild } from './server-child.ts';

const is503 = (o: Outcome) => o.status === 503 || o.end === 'error-event';
const served = (o: Outcome) => o.end === 'finish' || (o.end === 'body' && o.status === 200);

/** At least `observeMs`, then until a request sent after `sinceMs` has been served (bounded by `recoverWaitMs`). */
async function untilServedAgain(s: FaultSettings, load: ClosedLoop, sinceMs: number): Promise<void> {
  const until = performance.now() + s.recoverWaitMs;
  await sleep(s.observeMs);
  while (performance.now() < until && !load.outcomes.some((o) => o.atMs >= sinceMs && served(o))) await sleep(200);
}

/** Load, the fault at `fault()`, watch; the rows, detections and checks every engine fault shares. */
async function underLoad(server: ServerChild, s: FaultSettings, record: ScenarioRecord, what: string, fault: () => Promise<void>, afterFault?: (sinceMs: number, probes: Probes, load: ClosedLoop) => Promise<void>): Promise<void> {
  const load = new ClosedLoop(server.url, { concurrency: s.concurrency, maxRequests: 10_000, maxMs: s.warmMs + s.statusWaitMs + 2 * s.recoverWaitMs + s.observeMs, request: (i) => streamRequest(s, i) });
  await sleep(s.warmMs);
  const probes = new Probes(server.url);
  const at = performance.now();
  await fault();
  if (afterFault) await afterFault(at, probes, load);
  else await untilServedAgain(s, load, at);
  const outcomes = await load.stop();
  await probes.stop();
  const inFlight = outcomes.filter((o) => o.atMs < at && o.atMs + o.ms >= at);
  const after = outcomes.filter((o) => o.atMs >= at);
  record.rows.push(tally('load before the fault', outcomes.filter((o) => o.atMs + o.ms < at)), tally(`in flight at the ${what}`, inFlight), tally(`sent after the ${what}`, after));
  const first503 = firstAfter(outcomes, at, is503);
  const back = firstAfter(after, at, served);
  record.detections.push(
    { what: 'first 503 / error event', ms: first503 },
    { what: '/ready not 200', ms: probes.firstFailure('/ready', at)?.ms ?? null },
    { what: '/health not 200', ms: probes.firstFailure('/health', at)?.ms ?? null },
    { what: 'first request sent after it served (at its end)', ms: back },
    { what: '/ready 200 again', ms: probes.recovered('/ready', at) },
  );
  const ended = inFlight.filter((o) => o.end === 'finish' || o.end === 'error-event' || (o.end === 'body' && o.status !== 0));
  record.checks.push(
    { what: `every request in flight at the ${what} ended (finish_reason or an error event), none cut or hanging`, ok: ended.length === inFlight.length, seen: `${ended.length} of ${inFlight.length}` },
    { what: `requests sent after the ${what} are served again within the scenario`, ok: back !== null, seen: back === null ? 'none served' : `first after ${Math.round(back)} ms` },
    { what: 'no request hung', ok: !outcomes.some(neverAnswered), seen: `${outcomes.filter(neverAnswered).length} never answered` },
  );
}

export const crashScenario: ScenarioDef = {
  id: 'engine-crash',
  title: 'Engine worker crash',
  procedure: (s) => `Closed-loop streaming completions (${s.concurrency} at a time, ${s.maxTokens} tokens) for ${s.warmMs / 1000} s, then the dense variant's engine worker thread exits (injected: \`process.exit(1)\` between two steps); watched for ${s.observeMs / 1000} s, and on until a request sent after the crash is served (at most ${s.recoverWaitMs / 1000} s) while the restart policy starts a new engine.`,
  entry: 'fault server',
  serverArgs: () => [],
  body: (server, s, record) =>
    underLoad(server, s, record, 'crash', async () => {
      server.injectEngineFault({ variant: s.modelId, action: 'crash' });
    }),
};

export const restartScenario: ScenarioDef = {
  id: 'admin-restart',
  title: 'Operator restart of an engine',
  procedure: (s) => `Closed-loop streaming completions (${s.concurrency} at a time) for ${s.warmMs / 1000} s, then \`POST /admin/models/${s.modelId}/restart\` (stops the engine thread as a crash would, the restart policy starts a new one); watched for ${s.observeMs / 1000} s, and on until a request sent after it is served (at most ${s.recoverWaitMs / 1000} s).`,
  entry: 'mop serve',
  serverArgs: () => [],
  body: async (server, s, record) => {
    let call: Outcome | undefined;
    await underLoad(server, s, record, 'restart', async () => {
      call = await send(server.url, adminRequest(s, 'POST', `/models/${encodeURIComponent(s.modelId)}/restart`));
    });
    record.rows.push(tally('POST /admin/models/{id}/restart', [call!]));
    record.checks.push({ what: 'the restart call is answered 2xx', ok: call!.status >= 200 && call!.status < 300, seen: `${call!.status || call!.end}${call!.code ? ' ' + call!.code : ''}` });
  },
};

export const stallScenario: ScenarioDef = {
  id: 'engine-stall',
  title: 'Engine stall (hung ONNX Runtime call)',
  procedure: (s) =>
    `Closed-loop streaming completions (${s.concurrency} at a time) for ${s.warmMs / 1000} s, then the dense variant's engine thread blocks for ${s.stallMs / 1000} s (injected \`Atomics.wait\`: no step ends, no message is read, no heartbeat leaves); the server runs with \`--engine-stall-ms ${s.engineStallMs}\`. Watched until the stall shows or ${s.statusWaitMs / 1000} s pass, then \`POST /admin/models/{id}/restart\` and watched ${s.observeMs / 1000} s more. Requests wait ${s.statusWaitMs / 1000} s for a status and ${s.endWaitMs / 1000} s for their end, less than the stall: a request the server leaves hanging is never answered.`,
  entry: 'fault server',
  serverArgs: (s) => ['--engine-stall-ms', String(s.engineStallMs)],
  body: async (server, s, record) => {
    let restart: Outcome | undefined;
    await underLoad(
      server,
      s,
      record,
      'stall',
      async () => {
        server.injectEngineFault({ variant: s.modelId, action: 'stall', ms: s.stallMs });
      },
      async (at, probes, load) => {
        // Until the server says the engine is stalled (a 503, an error event or /ready failing), bounded.
        const until = at + s.statusWaitMs;
        while (performance.now() < until && !load.outcomes.some((o) => o.atMs + o.ms >= at && is503(o)) && probes.firstFailure('/ready', at) === null) await sleep(100);
        await sleep(1000);
        const restartAt = performance.now();
        restart = await send(server.url, adminRequest(s, 'POST', `/models/${encodeURIComponent(s.modelId)}/restart`));
        await untilServedAgain(s, load, restartAt);
      },
    );
    const stalledCodes = record.rows.flatMap((r) => [...Object.keys(r.byStatus), ...Object.keys(r.streamError)]).filter((k) => k.includes('engine_stalled'));
    const detect = record.detections[0]!.ms;
    record.rows.push(tally('POST /admin/models/{id}/restart (after the stall showed)', [restart!]));
    record.checks.push(
      { what: `the stall shows as 503 engine_stalled within --engine-stall-ms + 3 s`, ok: detect !== null && detect <= s.engineStallMs + 3000 && stalledCodes.length > 0, seen: detect === null ? 'no 503 / error event' : `first after ${Math.round(detect)} ms; codes: ${stalledCodes.join(', ') || 'none named engine_stalled'}` },
      { what: '/ready turns 503 while stalled', ok: record.detections[1]!.ms !== null, seen: record.detections[1]!.ms === null ? 'stayed 200' : `after ${Math.round(record.detections[1]!.ms)} ms` },
      { what: '/health turns 503 while stalled (not live)', ok: record.detections[2]!.ms !== null, seen: record.detections[2]!.ms === null ? 'stayed 200' : `after ${Math.round(record.detections[2]!.ms)} ms` },
      { what: 'the restart call is answered 2xx', ok: restart!.status >= 200 && restart!.status < 300, seen: `${restart!.status || restart!.end}${restart!.code ? ' ' + restart!.code : ''} after ${Math.round(restart!.ms)} ms` },
    );
  },
};
