import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Outcome } from '../../scripts/faults/client.ts';
import { renderFaultsReport } from '../../scripts/faults/markdown.ts';
import { parseRequestOutcomes, outcomeDeltas } from '../../scripts/faults/metrics.ts';
import { type FaultsReport, type ScenarioResult, scenarioPassed, tally } from '../../scripts/faults/report.ts';
import { classifyRaw } from '../../scripts/faults/stalled-reader.ts';

const o = (end: Outcome['end'], status: number, extra: Partial<Outcome> = {}): Outcome => ({ atMs: 0, ms: 100, status, end, ...extra });

/** A crash scenario as a run would record it: one stream hung, so it fails. */
function crashFixture(): ScenarioResult {
  return {
    id: 'engine-crash',
    title: 'Engine worker crash',
    procedure: 'Load, then the engine thread exits.',
    server: 'fault server --max-batch 4',
    rows: [
      tally('in flight at the crash', [o('finish', 200, { finishReasons: ['length'] }), o('error-event', 200, { code: 'model_unavailable' }), o('no-end', 200, { ms: 30_000 })]),
      tally('sent after the crash', [o('body', 503, { code: 'model_unavailable' }), o('body', 503, { code: 'model_unavailable' }), o('connection', 0), o('no-status', 0)]),
    ],
    detections: [{ what: 'first 503 / error event', ms: 120 }, { what: '/ready 200 again', ms: null }],
    metricDeltas: { unavailable: 3, success: 1 },
    rssBeforeMiB: 200,
    rssAfterMiB: 212.4,
    checks: [{ what: 'served again', ok: false, seen: 'none served' }],
    notes: ["model 'x': engine stopped (engine worker exited with code 1); restarting it"],
    error: null,
    seconds: 14,
  };
}

function reportFixture(scenarios: ScenarioResult[]): FaultsReport {
  return {
    date: '2026-01-01T00:00:00.000Z',
    command: 'npm run bench:faults -- --quick',
    model: 'bundled stories260K',
    load: 'closed loop of 4 streams',
    machine: { cpu: 'Test CPU', cores: 2, memGiB: 8, loadAvgStart: [1, 1, 1], loadAvgEnd: [2, 1.5, 1], node: 'v20' },
    code: 'abc1234-dirty',
    scenarios,
    soak: {
      model: 'bundled',
      concurrency: 4,
      server: 'mop serve',
      tolerance: 0.1,
      error: null,
      rows: [{ kind: 'streaming', planned: 10_000, sent: 10_000, ok: 10_000, failed: 0, neverAnswered: 0, seconds: 60, rssStartMiB: 200, rssMinMiB: 198, rssMaxMiB: 230, rssEndMiB: 225, driftEnd: 0.125, driftMax: 0.15, samples: [200, 230, 225] }],
    },
    seconds: 100,
  };
}

describe('bench:faults report', () => {
  it('tallies each way a request can end into its column', () => {
    const [inFlight, after] = crashFixture().rows;
    assert.deepEqual(inFlight!.byStatus, { '200': 3 });
    assert.deepEqual(inFlight!.streamFinish, { length: 1 });
    assert.deepEqual(inFlight!.streamError, { model_unavailable: 1 });
    assert.equal(inFlight!.neverAnswered, 1);
    assert.deepEqual(after!.byStatus, { '503 model_unavailable': 2 });
    assert.equal(after!.connectionFailed, 1);
    assert.equal(after!.neverAnswered, 1);
    assert.equal(after!.sent, 4);
  });

  it('renders the summary, the scenario table with never-answered counts, and the soak table', () => {
    const failing = crashFixture();
    const passing: ScenarioResult = { ...crashFixture(), id: 'admin-restart', title: 'Operator restart', rows: [tally('load', [o('finish', 200, { finishReasons: ['stop'] })])], checks: [{ what: 'served again', ok: true, seen: 'yes' }] };
    assert.equal(scenarioPassed(failing), false);
    assert.equal(scenarioPassed(passing), true);
    const md = renderFaultsReport(reportFixture([failing, passing]));
    assert.match(md, /\*\*1 of 2 scenarios pass\*\*; 2 requests never answered in all\./);
    assert.match(md, /\| \[Engine worker crash\]\(#engine-crash\) \| 7 \| 2 \| 0\/1 \| \*\*FAIL\*\*: 2 never answered; served again \(none served\) \|/);
    assert.match(md, /\| \[Operator restart\]\(#admin-restart\) \| 1 \| 0 \| 1\/1 \| pass \|/);
    assert.ok(md.includes('| in flight at the crash | 3 | 200: 3 | length: 1 | model_unavailable: 1 | 0 | 0 | 0 | **1** | 100 ms / 100 ms |'), md);
    assert.ok(md.includes('| sent after the crash | 4 | 503 model_unavailable: 2 | – | – | 0 | 1 | 0 | **1** | 100 ms / 100 ms |'), md);
    assert.match(md, /Detection: first 503 \/ error event 120 ms; \/ready 200 again –\./);
    assert.match(md, /unavailable: 3, success: 1\. RSS of the server process: 200 MiB before, 212 MiB at the end\./);
    assert.ok(md.includes('| streaming | 10000 (10000) | 10000 | 0 | 0 | 60 s | 200 MiB | 198 MiB | 230 MiB | 225 MiB | +12.5% | +15.0% | **no** |'), md);
    assert.match(md, /\| \[soak\]\(#soak\) \| 10000 \| 0 \| – \| \*\*RSS not flat\*\* \|/);
    assert.match(md, /Command: `npm run bench:faults -- --quick`/);
    assert.match(md, /load average \(1\/5\/15 min\) 1\.00 \/ 1\.00 \/ 1\.00 at the start, 2\.00 \/ 1\.50 \/ 1\.00 at the end/);
  });

  it('says when the harness could not run a scenario', () => {
    const md = renderFaultsReport(reportFixture([{ ...crashFixture(), rows: [], checks: [], error: 'Error: the server did not listen within 180 s\nstack' }]));
    assert.match(md, /\| \*\*not run\*\*: Error: the server did not listen within 180 s \|/);
  });

  it('reads mop_requests_total by outcome, summed over models, and its change', () => {
    const text = ['# HELP mop_requests_total x', 'mop_requests_total{model="a",outcome="success"} 3', 'mop_requests_total{model="b",outcome="success"} 2', 'mop_requests_total{model="a",outcome="rejected"} 1', 'mop_request_other{outcome="success"} 9'].join('\n');
    const before = parseRequestOutcomes(text);
    assert.deepEqual(before, { success: 5, rejected: 1 });
    assert.deepEqual(outcomeDeltas(before, { success: 9, rejected: 1, unavailable: 2 }), { success: 4, unavailable: 2 });
    assert.equal(outcomeDeltas(null, before), null);
  });

  it('classifies what a stalled reader finds in its connection', () => {
    const chunk = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;
    const head = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n';
    const finished = Buffer.from(head + chunk('data: {"choices":[{"text":"é","finish_reason":null}]}\n\n') + chunk('data: {"choices":[{"text":"","finish_reason":"length"}]}\n\n') + chunk('data: [DONE]\n\n') + '0\r\n\r\n');
    assert.deepEqual(classifyRaw(finished, true, undefined), { status: 200, end: 'finish', chunks: 2, finishReasons: ['length'] });
    assert.equal(classifyRaw(finished, false, undefined).end, 'no-end');
    const errored = Buffer.from(head + chunk('data: {"error":{"code":"engine_stalled"}}\n\n'));
    assert.equal(classifyRaw(errored, true, undefined).code, 'engine_stalled');
    assert.deepEqual(classifyRaw(Buffer.alloc(0), false, undefined), { status: 0, end: 'no-status' });
  });
});
