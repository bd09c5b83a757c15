import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderIsolationReport } from '../../scripts/isolation/markdown.ts';
import { type PhaseWindow, phaseAt, phaseFigures, type ProbeSample, type RequestSample } from '../../scripts/isolation/phases.ts';
import type { IsolationReport } from '../../scripts/isolation/report.ts';
import { printedSetting, shellCommand } from '../../scripts/isolation/server-settings.ts';
import { evaluateTargets } from '../../scripts/isolation/targets.ts';

const windows: PhaseWindow[] = [
  { phase: 'before', startMs: 0, endMs: 1000 },
  { phase: 'during', startMs: 1200, endMs: 2200 },
  { phase: 'after', startMs: 2300, endMs: 3300 },
];

const probe = (endpoint: ProbeSample['endpoint'], atMs: number, ms: number, status = 200): ProbeSample => ({ endpoint, atMs, ms, status });
const req = (atMs: number, e2eMs: number, ok = true): RequestSample => ({ atMs, ok, error: ok ? null : 'timeout', e2eMs, ttftMs: ok ? e2eMs / 4 : null });

/** Healthy before and after; during the prune /health stalls once, /ready fails once, one request times out. */
function sample() {
  const probes: ProbeSample[] = [];
  for (let t = 0; t < 3300; t += 100) {
    const during = t >= 1200 && t < 2200;
    probes.push(probe('/health', t, during && t === 1500 ? 900 : 2));
    probes.push(probe('/metrics', t, 5));
    if (t % 500 === 0) probes.push(probe('/ready', t, 3, during && t === 1500 ? 0 : 200));
  }
  const requests = [req(10, 100), req(500, 120), req(1300, 400), req(1900, 90, false), req(2400, 110), req(1100, 5000)];
  return phaseFigures(windows, probes, requests);
}

describe('isolation benchmark bookkeeping (scripts/isolation)', () => {
  it('puts each sample in the phase it was sent in, and leaves the drains between phases out', () => {
    assert.equal(phaseAt(windows, 999), 'before');
    assert.equal(phaseAt(windows, 1000), undefined);
    assert.equal(phaseAt(windows, 1200), 'during');
    const [before, during, after] = sample();
    assert.deepEqual([before!.requests.sent, during!.requests.sent, after!.requests.sent], [2, 2, 1], 'the request sent at 1100 ms (a drain) counts nowhere');
    assert.equal(during!.probes['/health'].count, 10);
    assert.equal(during!.probes['/health'].latency!.max, 900);
    assert.equal(during!.probes['/ready'].non200, 1, 'a probe with no HTTP answer (status 0) is a failure');
    assert.equal(during!.probes['/health'].late, 0, '900 ms is within the liveness timeout');
    assert.equal(before!.probes['/ready'].non200, 0);
    assert.deepEqual(during!.requests.errors, { timeout: 1 });
    assert.equal(during!.requests.e2eMs!.count, 1, 'latencies are of successful requests only');
    assert.equal(before!.requests.ttftMs!.p50, 27.5);
  });

  it('fails the /health, /ready, failure and p99-ratio targets on a stalled prune and passes them on a clean one', () => {
    const stalled = evaluateTargets(4, sample());
    assert.deepEqual(stalled.map((t) => [t.name, t.met]), [
      ['/health p99 during prune', false],
      ['/health max during prune', false],
      ['/ready always 200 within 3 s', false],
      ['failed requests', false],
      ['serving p99 during / before', false],
    ]);
    const probes: ProbeSample[] = [];
    for (let t = 0; t < 3300; t += 100) probes.push(probe('/health', t, 3), probe('/ready', t, 3));
    const clean = evaluateTargets(8, phaseFigures(windows, probes, [req(10, 100), req(1300, 150), req(2400, 100)]));
    assert.ok(clean.every((t) => t.met), JSON.stringify(clean));
    assert.equal(clean[4]!.value, '1.50× (150.0 ms / 100.0 ms)');
  });

  it('does not count a target as met when nothing was measured', () => {
    assert.ok(evaluateTargets(4, phaseFigures(windows, [], [])).every((t) => !t.met));
  });

  it('counts a /ready probe answered 200 after the readiness timeout as failed, as a kubelet would', () => {
    const probes = [probe('/ready', 10, 20), probe('/ready', 1300, 2999), probe('/ready', 1800, 3001), probe('/ready', 2400, 5)];
    const phases = phaseFigures(windows, probes, [req(10, 100), req(1300, 100), req(2400, 100)]);
    assert.deepEqual(phases.map((p) => [p.probes['/ready'].non200, p.probes['/ready'].late]), [[0, 0], [0, 1], [0, 0]]);
    const ready = evaluateTargets(4, phases).find((t) => t.name.startsWith('/ready'))!;
    assert.equal(ready.met, false);
    assert.equal(ready.value, '1 of 4 probes failed');
  });

  it('renders one table row per concurrency and phase, the targets, and says when they are not met', () => {
    const phases = sample();
    const report: IsolationReport = {
      version: 1,
      tool: 'bench-isolation',
      startedAt: '2026-12-03T06:00:00.000Z',
      command: 'npm run bench:isolation -- --quick',
      note: 'shared machine',
      quick: true,
      machine: { cpus: 2, cpuModel: 'Test CPU', memoryGiB: 8, node: 'v20.0.0', os: 'Linux', loadAverage: { start: 1, end: 2 } },
      server: { model: 'mop synth --preset 100m', env: { MOP_THREADS: '1', MOP_PRUNE_THREADS: '1' }, settingsShown: { MOP_THREADS: '1', MOP_PRUNE_THREADS: null }, maxBatch: 8 },
      load: { maxTokens: 16, phaseSec: 1, stream: true, ignoreEos: true },
      prune: { target: 0.4, samples: 4, seqLen: 32, strategy: 'mop' },
      results: [{ concurrency: 4, pruneJob: { status: 'succeeded', seconds: 1, error: null, variant: 'isolation-c4' }, skippedProbes: 3, phases }],
      targets: evaluateTargets(4, phases),
      allTargetsMet: false,
      elapsedSec: 10,
    };
    const md = renderIsolationReport(report);
    assert.match(md, /\*\*Targets not met\.\*\*/);
    assert.match(md, /> shared machine/);
    assert.match(md, /\| 4 \| during \(prune 1\.0 s\) \| 1\.0 \| 2\.0 \/ 8\d\d\.\d \/ 900\.0 \(10\) \|/);
    assert.match(md, /\*\*1 not 200\*\* of 2/);
    assert.match(md, /200 within 3 s \(2\)/);
    assert.match(md, /\| 4 \| \/health max during prune \| 900\.0 ms \| ≤ 250 ms \| \*\*no\*\* \|/);
    assert.equal(md.match(/^\| 4 \| (before|during|after)/gm)?.length, 3);
    assert.match(md, /`npm run bench:isolation -- --quick`/);
    assert.match(md, /3 at concurrency 4/);
    assert.match(md, /`MOP_THREADS=1` \(the server's configuration shows 1\), `MOP_PRUNE_THREADS=1` \(not in the server's start-up configuration: ignored\)/);
  });

  it('reads what the server printed for a setting, and null for one it does not know', () => {
    const log = 'mop serve: configuration (flag / environment variable):\n  PORT                     40365\n  MOP_THREADS              1\n  MOP_PRUNE_TARGET         (default)\nloaded model\n';
    assert.equal(printedSetting(log, 'MOP_THREADS'), '1');
    assert.equal(printedSetting(log, 'MOP_PRUNE_TARGET'), '(default)');
    assert.equal(printedSetting(log, 'MOP_PRUNE_THREADS'), null);
  });

  it('quotes the arguments of the recorded command line that a shell would split', () => {
    assert.equal(shellCommand(['--quick', '--note', "it's shared", '--phase-sec', '5']), "--quick --note 'it'\\''s shared' --phase-sec 5");
  });
});
