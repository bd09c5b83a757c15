import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DecodeProfile } from '../../scripts/speedup/decode-profile.ts';
import { finishMeasurement, type ClientFigures, type Measurement, type ServerFigures } from '../../scripts/speedup/figures.ts';
import type { PeerReport } from '../../scripts/speedup/llamacpp-peer.ts';
import { compressionForRatio, renderMarkdown } from '../../scripts/speedup/markdown.ts';
import { chartPanels, decomposeRatio, engineSplit, engineTable, evaluateTargets, fmt, latencyTable, mdTable, type ModelSection, serverTable, type SpeedupReport, variantsTable, type VariantResult } from '../../scripts/speedup/report.ts';

function client(e2e: number, tokensPerSec: number): ClientFigures {
  const l = (v: number) => ({ count: 16, mean: v, p50: v, p99: v * 1.1 });
  return { sent: 16, ok: 16, failed: 0, errors: {}, e2e: l(e2e), ttft: l(e2e / 10), tpot: l(e2e / 70), tokensPerSec, requestsPerSec: 1, completionTokens: 1024, promptTokensMean: 20, elapsedSec: 10 };
}
function server(e2e: number): ServerFigures {
  const l = (v: number) => ({ count: 16, mean: v, p50: v, p99: v });
  return { e2e: l(e2e), ttft: l(e2e / 12), tpot: l(e2e / 70) };
}
function measure(c: number, e2e: number, dense?: Measurement): Measurement {
  return finishMeasurement(c, client(e2e, 64_000 / e2e), server(e2e - 3), dense);
}
function variant(id: string, strategy: VariantResult['strategy'], target: number, measurements: Measurement[], batch = 1): VariantResult {
  return {
    model: '100m',
    id,
    strategy,
    batch,
    target,
    achieved: target === 0 ? 0 : target + 0.0001,
    params: { total: 100e6 - target * 75e6, blocks: 75e6 * (1 - target) },
    layers: strategy === 'depth' ? 8 : 12,
    steps: strategy === 'depth' ? { depth: 4, width: 1 } : { depth: 0, width: 6 },
    pruneSeconds: strategy === 'dense' ? null : 30,
    error: null,
    measurements,
  };
}

const profile: DecodeProfile = {
  batch: 1,
  promptTokens: 64,
  dense: { medianMs: 25, meanMs: 25, steps: 32 },
  head: { medianMs: 7, meanMs: 7, steps: 32 },
  overhead: { medianMs: 0.2, meanMs: 0.2, steps: 32 },
  blocksMs: 18,
  lmHeadMs: 6.8,
  overheadMs: 0.2,
  floorRatio: 0.28,
};

function section(): ModelSection {
  const d1 = measure(1, 1800);
  const d8 = measure(8, 3000);
  return {
    model: '100m',
    shape: '12 layers × (heads 12, kv 4, headDim 64, ffn 2048), hidden 768, vocab 32000, tied embeddings',
    dense: { total: 100.09e6, blocks: 75.5e6, embeddings: 24.6e6, lmHead: 24.576e6, layers: 12 },
    context: 180,
    variants: [
      variant('dense', 'dense', 0, [d1, d8]),
      variant('mop-40', 'mop', 0.4, [measure(1, 1300, d1), measure(8, 2100, d8)]),
      variant('depth-40', 'depth', 0.4, [measure(1, 1080, d1), measure(8, 1900, d8)]),
      variant('width-40', 'width', 0.4, [measure(1, 1350, d1), measure(8, 2200, d8)]),
    ],
    profiles: [profile, { ...profile, batch: 8 }],
    paramBound: { lmHeadShare: 0.2455, ratioAt: { '0.4': 0.698 } },
    error: null,
    wallSec: 300,
    loadAvg: [0.4, 0.9],
  };
}

const peer: PeerReport = {
  version: 1,
  date: '2026-01-01',
  available: true,
  reason: null,
  peer: { package: 'node-llama-cpp', version: '3.22.1', binary: 'prebuilt', llamaCppRelease: 'x@y', systemInfo: 'AVX2 = 1' },
  machine: { cpu: 'cpu', cores: 2, node: 'v20' },
  threads: [2, 1],
  promptTokens: 32,
  tokens: 64,
  reps: 3,
  models: [
    {
      model: '100m',
      params: { total: 100e6, blocks: 75e6 },
      gguf: { path: 'x.gguf', bytes: 400e6, dtype: 'f32' },
      error: null,
      runs: [
        {
          threads: 2,
          loadAvg: [0.5, 0.6],
          ours: { best: { promptMs: 100, decodeMs: 1000, decodeTokens: 64, promptTokensPerSec: 320, decodeTokensPerSec: 64, medianStepMs: 15.6 }, medianDecodeTokensPerSec: 60, medianPromptTokensPerSec: 300, reps: [] },
          llamacpp: { best: { promptMs: 80, decodeMs: 900, decodeTokens: 64, promptTokensPerSec: 400, decodeTokensPerSec: 71.1, medianStepMs: 14 }, medianDecodeTokensPerSec: 70, medianPromptTokensPerSec: 390, reps: [] },
        },
      ],
    },
  ],
};

function report(): SpeedupReport {
  const r: SpeedupReport = {
    version: 1,
    date: '2026-11-28T20:00:00.000Z',
    command: 'node --import tsx scripts/bench-speedup.ts',
    durationSec: 600,
    machine: { cpu: 'AMD EPYC', cores: 2, memGiB: 24, node: 'v20.20.2', platform: 'linux', loadAvgStart: [0.5, 0, 0], loadAvgEnd: [0.7, 0, 0], threads: 2 },
    settings: {
      quick: false,
      models: ['100m'],
      strategies: ['mop', 'depth', 'width'],
      ratios: [0.4],
      concurrency: [1, 8],
      requests: { '1': 16, '8': 32 },
      maxTokens: 64,
      rounds: 'auto',
      samples: 8,
      seqLen: 64,
      maxLoaded: 3,
      tolerance: 0.1,
      promptsFile: 'loadtest/prompts.txt',
      promptCount: 42,
    },
    models: [section()],
    peer,
    peerError: null,
    targets: [],
  };
  r.targets = evaluateTargets(r);
  return r;
}

describe('mdTable', () => {
  it('writes a header, an alignment row and one line per row; escapes pipes', () => {
    const t = mdTable(['name', 'value'], [['a|b', '1'], ['c', '22']]);
    assert.deepEqual(t.split('\n'), ['| name | value |', '| --- | ---: |', '| a\\|b | 1 |', '| c | 22 |']);
    assert.equal(mdTable(['x', 'y'], [], ['l', 'l']).split('\n')[1], '| --- | --- |');
  });

  it('refuses a row whose width differs from the header', () => {
    assert.throws(() => mdTable(['a', 'b'], [['1']]), /1 cells, the header 2/);
  });

  it('formats numbers for the tables', () => {
    assert.equal(fmt.ms(1234.5), '1235');
    assert.equal(fmt.ms(12.345), '12.3');
    assert.equal(fmt.ms(1.2345), '1.23');
    assert.equal(fmt.ms(Number.NaN), '–');
    assert.equal(fmt.ratio(0.61234), '0.612');
    assert.equal(fmt.pct(0.4), '40.0%');
    assert.equal(fmt.params(100_090_000), '100.09M');
    assert.equal(fmt.params(260_000), '260.0K');
  });
});

describe('report tables', () => {
  const s = section();

  it('the main table: one row per measured variant with params, steps, latencies, tok/s and both ratios', () => {
    const lines = latencyTable(s, 1).split('\n');
    assert.equal(lines.length, 2 + 4);
    const cols = (l: string) => l.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
    const header = cols(lines[0]!);
    for (const l of lines.slice(2)) assert.equal(cols(l).length, header.length);
    const mop = cols(lines.find((l) => l.startsWith('| mop-40'))!);
    const at = (name: string) => mop[header.indexOf(name)];
    assert.equal(at('params total'), '70.00M');
    assert.equal(at('params blocks'), '45.00M');
    assert.equal(at('steps D / W'), '0 / 6');
    assert.equal(at('e2e p50 ms'), '1300');
    assert.equal(at('e2e p99 ms'), '1430');
    assert.equal(at('ratio p50 (client)'), (1300 / 1800).toFixed(3));
    assert.equal(at('ratio mean (server)'), (1297 / 1797).toFixed(3));
    assert.match(at('client ≈ server')!, /^yes \(/);
    assert.ok(lines.some((l) => l.startsWith('| dense (batch 1) |')));
  });

  it('the server table shows both means and the client − server gap; the variants table lists each once', () => {
    const t = serverTable(s, 8);
    assert.match(t, /\| mop-40 \| 2097 \| 2100 \| yes \(0\.1%\) \| 3\.00 \|/);
    const v = variantsTable(s).split('\n');
    assert.equal(v.length, 2 + 4);
    assert.match(v[3]!, /^\| mop-40 \| mop \| 40% \| 40\.0% \|/);
  });
});

describe('engine split', () => {
  it('splits closed-loop latency per request into engine and outside-engine time', () => {
    const m = measure(8, 3000);
    m.engine = { decodeSteps: 256, decodeMs: 8000, decodeRows: 2048, prefillCalls: 32, prefillMs: 1000, prefillTokens: 2000 };
    // 16 requests at c=8 in 10 s: 5 s of wall per request slot; 9 s of engine → 4.5 s engine, 0.5 s outside.
    const x = engineSplit(m)!;
    assert.equal(x.engineMs, 4500);
    assert.equal(x.outsideMs, 500);
    assert.equal(x.prefillMs, 500);
    assert.equal(x.meanStepMs, 31.25);
    assert.equal(x.meanBatch, 8);
    assert.equal(x.busyShare, 0.9);
    assert.equal(engineSplit(measure(1, 100)), null, 'no engine data');
    const s = section();
    s.variants[0]!.measurements[1]!.engine = m.engine;
    s.variants[1]!.measurements[1]!.engine = { ...m.engine, decodeMs: 5000 };
    const t = engineTable(s, 8);
    assert.match(t, /\| mop-40 \| 19\.5 \| 8\.0 \| 500 \| 2500 \| 2000 \| 60% \| 0\.667 \| 4\.000 \|/);
  });
});

describe('ratio decomposition', () => {
  it('splits ratio − ideal into head, blocks and outside-engine parts that add up', () => {
    // c=1, 16 requests, 10 s each run → 625 ms wall per request.
    const dense = measure(1, 1000);
    dense.engine = { decodeSteps: 16 * 63, decodeMs: 16 * 63 * 8, decodeRows: 16 * 63, prefillCalls: 16, prefillMs: 16 * 40, prefillTokens: 320 };
    const v = measure(1, 700, dense);
    v.engine = { ...dense.engine, decodeMs: 16 * 63 * 6, prefillMs: 16 * 25 };
    v.client = { ...v.client, elapsedSec: (16 * 63 * 6 + 16 * 25 + 16 * 60) / 1000 };
    dense.client = { ...dense.client, elapsedSec: (16 * 63 * 8 + 16 * 40 + 16 * 60) / 1000 };
    const d = decomposeRatio(dense, v, 2, 0.6)!;
    const total = 63 * 8 + 40 + 60; // dense ms per request: engine 544 + outside 60
    const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-9, `${a} ≉ ${b}`);
    close(d.ratio, (63 * 6 + 25 + 60) / total);
    close(d.head, (63 * 2 * (1 - 0.6)) / total);
    close(d.outside, (60 - 0.6 * 60) / total);
    close(d.ideal + d.head + d.blocks + d.outside, d.ratio);
    assert.equal(decomposeRatio(measure(1, 1), v, 2, 0.6), null, 'no engine data');
  });
});

describe('targets', () => {
  it('judges the 40% MoP ratio at c=1 and c=8 and dense decode vs llama.cpp', () => {
    const t = evaluateTargets({ models: [section()], peer, peerError: null });
    const by = Object.fromEntries(t.map((x) => [x.id, x]));
    assert.equal(by['e2e-c1']!.met, false, `${1300 / 1800} > 0.61`);
    assert.ok(Math.abs(by['e2e-c1']!.value! - 1300 / 1800) < 1e-12);
    assert.equal(by['e2e-c8']!.met, false);
    // The weights-read bound at 40% for this shape is 0.698: measured − bound = +0.024, within 0.03.
    assert.ok(Math.abs(by['e2e-c1-vs-bound']!.value! - (1300 / 1800 - by['e2e-c1-vs-bound']!.other!)) < 1e-12);
    assert.equal(by['e2e-c1-vs-bound']!.met, Math.abs(by['e2e-c1-vs-bound']!.value!) <= 0.03);
    assert.equal(by['decode-vs-llamacpp-q8_0'], undefined, 'no Q8_0 peer run: no Q8_0 target');
    assert.equal(by['decode-vs-llamacpp']!.met, false, '64 < 71.1');
    assert.match(by['decode-vs-llamacpp']!.measured, /64\.0 vs 71\.1 tok\/s/);
    assert.equal(by['decode-vs-llamacpp']!.robust, true, 'the median steps agree: llama.cpp is faster either way');
    // Ours ahead by tokens/s, but llama.cpp's typical step is faster: within noise.
    const p2: PeerReport = structuredClone(peer);
    p2.models[0]!.runs[0]!.ours!.best.decodeTokensPerSec = 80;
    const t2 = evaluateTargets({ models: [section()], peer: p2, peerError: null }).find((x) => x.id === 'decode-vs-llamacpp')!;
    assert.equal(t2.met, true);
    assert.equal(t2.robust, false);
    assert.match(t2.note, /by the median decode step llama\.cpp is faster \(14\.0 vs 15\.6 ms ours\)/);
  });

  it('shows but does not judge the 40% targets when the variants were pruned with a latency budget', () => {
    const s = { ...section(), budget: 'latency' as const };
    const t = evaluateTargets({ models: [s], peer, peerError: null });
    for (const id of ['e2e-c1', 'e2e-c8', 'e2e-c1-vs-bound'] as const) {
      const x = t.find((y) => y.id === id)!;
      assert.equal(x.met, null, id);
      assert.notEqual(x.value, null, `${id}: the figure is still shown`);
      assert.match(x.note, /latency budget/);
    }
    assert.equal(t.find((x) => x.id === 'decode-vs-llamacpp')!.met, false, 'the peer target does not depend on the budget');
    const md = renderMarkdown({ ...report(), models: [s], targets: t }, { svgFile: 'a.svg', jsonFile: 'a.json', bound1b: undefined });
    assert.match(md, /Pruned with `--budget latency`/);
    assert.match(md, /\| not judged \|/);
  });

  it('says "not measured" instead of guessing when data is missing', () => {
    const s = section();
    s.variants = s.variants.filter((v) => v.strategy !== 'mop');
    const t = evaluateTargets({ models: [s], peer: null, peerError: 'skipped (--no-peer)' });
    assert.ok(t.every((x) => x.met === null));
    assert.match(t.find((x) => x.id === 'decode-vs-llamacpp')!.measured, /skipped/);
  });

  it('flags a verdict within noise: per-round pairs across the threshold, or a different verdict against the median dense', () => {
    const s = section();
    const d = s.variants[0]!.measurements[0]!;
    s.variants[1]!.measurements[0] = { ...measure(1, 1000, d) };
    s.variants[1]!.measurements[0].ratio!.paired = { median: 0.58, min: 0.5, max: 0.7, rounds: 16 };
    let t = evaluateTargets({ models: [s], peer, peerError: null }).find((x) => x.id === 'e2e-c1')!;
    assert.equal(t.met, true);
    assert.equal(t.robust, false);
    assert.match(t.note, /per-round pairs range over 0\.50–0\.70, across 0\.61/);
    // Two more dense measurements, much faster: against their median the verdict flips.
    const fast = measure(1, 1500);
    s.variants.push({ ...s.variants[0]!, batch: 2, measurements: [fast] }, { ...s.variants[0]!, batch: 3, measurements: [fast] });
    s.variants[1]!.measurements[0].ratio!.paired = { median: 0.56, min: 0.55, max: 0.57, rounds: 16 };
    t = evaluateTargets({ models: [s], peer, peerError: null }).find((x) => x.id === 'e2e-c1')!;
    assert.equal(t.robust, false);
    assert.match(t.note, /against the median of the 3 dense measurements it is 0\.667/);
    const md = renderMarkdown({ ...report(), models: [s], targets: evaluateTargets({ models: [s], peer, peerError: null }) }, { svgFile: 'a.svg', jsonFile: 'a.json', bound1b: undefined });
    assert.match(md, /\*\*met\*\* \(within noise\)/);
    assert.match(md, /Verdicts within this run's noise: 100m e2e-c1/);
    assert.match(md, /Dense was measured once per batch; its e2e p50 across the batches \(same load, minutes apart\): 100m c=1: 1800 \/ 1500 \/ 1500 ms/);
  });

  it('passes a met target', () => {
    const s = section();
    const d = s.variants[0]!.measurements[0]!;
    s.variants[1]!.measurements[0] = measure(1, 1000, d);
    assert.equal(evaluateTargets({ models: [s], peer, peerError: null }).find((x) => x.id === 'e2e-c1')!.met, true);
  });
});

describe('quantized peer targets', () => {
  it('judges ours int8 against llama.cpp Q8_0 at every pinned thread count, not only the headline one', () => {
    const p: PeerReport = structuredClone(peer);
    const q8 = structuredClone(p.models[0]!);
    q8.quant = 'q8_0';
    q8.runs[0]!.ours!.best.decodeTokensPerSec = 90; // ahead at all cores
    q8.runs[0]!.llamacpp!.best.decodeTokensPerSec = 20;
    q8.runs.push({ ...structuredClone(q8.runs[0]!), threads: 1 });
    q8.runs[1]!.ours!.best.decodeTokensPerSec = 70; // behind at 1 thread
    q8.runs[1]!.llamacpp!.best.decodeTokensPerSec = 100;
    p.models.push(q8);
    const t = evaluateTargets({ models: [section()], peer: p, peerError: null }).find((x) => x.id === 'decode-vs-llamacpp-q8_0')!;
    assert.equal(t.value, 90);
    assert.equal(t.other, 20);
    assert.equal(t.met, false);
    assert.match(t.measured, /at 1 thread\(s\) 70\.0 vs 100/);
  });
});

describe('markdown and chart data', () => {
  it('states each target with its measured value and says plainly which were missed, with the measured cause', () => {
    const md = renderMarkdown(report(), { svgFile: 'speedup-latency.svg', jsonFile: 'speedup-report.json', bound1b: 0.633 });
    assert.match(md, /^# /);
    assert.match(md, /node --import tsx scripts\/bench-speedup\.ts/);
    assert.match(md, /AMD EPYC, 2 cores/);
    assert.match(md, /\*\*3 of 4 measured targets missed\*\*/);
    assert.match(md, /\| ≤ 0\.61 \| 0\.722 \(per-round pairs –; vs the median of 1 dense measurements 0\.722; server histograms, mean: 0\.722/);
    assert.match(md, /LM head 6\.80 ms \(\*\*27%\*\*\)/);
    assert.match(md, /What would fix the misses/);
    assert.match(md, /100m: latency ratios from the client and from the server's histograms agree within 10% in \*\*6 of 6\*\* cases/);
    assert.match(md, /\*\*Client and server agree\*\* on every latency ratio/);
    assert.match(md, /In this run at 40%: 100m c=1: MoP 0\.722 \(0 depth \/ 6 width steps\), depth-only 0\.600, width-only 0\.750 — depth-only lowest/);
    assert.ok(md.includes('![End-to-end latency ratio'), 'embeds the chart');
  });

  it('predicts the compression needed for a ratio from the step profile', () => {
    // 0.61 × 25 = 15.25 = 7 + (1 − r) × 18 → r = 1 − 8.25 / 18
    assert.ok(Math.abs(compressionForRatio(profile, 0.61) - (1 - 8.25 / 18)) < 1e-12);
    assert.ok(compressionForRatio({ blocksMs: 1, lmHeadMs: 9, overheadMs: 0 }, 0.5) > 1, 'unreachable');
  });

  it('builds one chart panel per model × concurrency with one series per strategy starting at dense', () => {
    const r = report();
    const panels = chartPanels(r, () => 0.7);
    assert.equal(panels.length, 2);
    for (const p of panels) {
      assert.deepEqual(p.series.map((s) => s.strategy), ['mop', 'depth', 'width']);
      for (const s of p.series) {
        assert.deepEqual(s.points[0], { x: 0, y: 1, yServer: null, label: 'dense' });
        assert.equal(s.points.length, 2);
      }
    }
    assert.deepEqual(panels[0]!.target, { x: 0.4, y: 0.61, label: 'target ≤ 0.61' });
    assert.deepEqual(panels[1]!.target, { x: 0.4, y: 0.65, label: 'target ≤ 0.65' });
  });
});
