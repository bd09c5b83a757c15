/**
 * `npm run bench:width`: do pruned shapes run at their parameter share on this machine, and what
 * makes them? Three measurements, each with the engine itself (ModelSession, no server):
 *
 * 1. Step time against kept MLP width: a stack of the model's own layers (full attention) with
 *    every MLP width in a window around 60% of the model's, timed interleaved step by step, float32
 *    and int8. Residuals against a straight-line fit, grouped by the largest power of two dividing
 *    the width, say whether widths that are multiples of 8/16/32 run faster than their parameters.
 * 2. The latency profile latency-aware pruning uses (src/mop/latency-profile.ts): fixed cost and
 *    cost per parameter of attention and MLP sub-blocks.
 * 3. The model pruned to the target with a parameter budget, with a latency budget, and each with
 *    --width-multiple 32: parameter ratio, weights-read bound, the profile's predicted step ratio
 *    and the measured decode-step ratio against dense, side by side.
 *
 * Writes docs/width-report.md and .json (the model: `mop synth --preset P`, cached under bench-out/).
 *
 *   npm run bench:width -- [--preset 100m] [--target 0.4] [--threads 2] [--dtype int8] [--skip-prune]
 *     [--out-dir docs] [--note TEXT]
 *
 * --dtype: the serving weights of part 3; --skip-prune: parts 1 and 2 only.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type LatencyProfile, measureLatencyProfile, predictedStepUs } from '../src/mop/latency-profile.ts';
import { defaultPruneSettings, type PruneRecipe } from '../src/service/prune/prune-options.ts';
import { runPrune } from '../src/service/prune/run-prune.ts';
import { cpuTarget, describeTarget, type ExecutionTarget, targetFor } from '../src/runtime/device/device.ts';
import { timeDecodeInterleaved } from '../src/runtime/engine/decode-timing.ts';
import { loadModel } from '../src/runtime/model/load.ts';
import type { LoadedModel } from '../src/runtime/model/loaded-model.ts';
import { type ModelSpec, parameterCounts } from '../src/runtime/model/spec.ts';
import { syntheticWeights } from '../src/runtime/model/synthetic.ts';
import { mean, median } from './lib/stats.ts';
import { parseScriptArgs } from './lib/script-args.ts';
import { log } from './lib/log.ts';
import { repoRoot } from './lib/repo-root.ts';
import { synthModelDir } from './lib/synth-model-dir.ts';

const args = parseScriptArgs(import.meta.url, {
  preset: { type: 'string', default: '100m' },
  target: { type: 'string', default: '0.4' },
  threads: { type: 'string', default: '2' },
  dtype: { type: 'string', default: 'int8' },
  'skip-prune': { type: 'boolean', default: false },
  'out-dir': { type: 'string', default: 'docs' },
  note: { type: 'string' },
});
const threads = Number(args.threads);
const target = Number(args.target);

interface WidthPoint {
  ffn: number;
  medianMs: number;
}

/** Part 1: decode step of `layers` full layers with each MLP width, interleaved. */
async function widthSweep(spec: ModelSpec, widths: number[], layers: number, t: ExecutionTarget): Promise<WidthPoint[]> {
  const l0 = spec.layers[0]!;
  const models = widths.map((ffn, k) => {
    const s: ModelSpec = { ...spec, vocabSize: 256, bosTokenId: 1, eosTokenIds: [2], layers: Array.from({ length: layers }, () => ({ ...l0, ffn })) };
    return { spec: s, weights: syntheticWeights(s, 100 + k) };
  });
  const timing = await timeDecodeInterleaved(models, { batch: 1, promptTokens: 64, steps: 40, warmup: 5, threads, target: t, maxMs: 120_000 });
  return widths.map((ffn, k) => ({ ffn, medianMs: timing[k]!.medianMs }));
}

/** Least-squares line through the points; residual of each point in % of its fitted time. */
function residuals(points: WidthPoint[]): { slopeMsPerNeuron: number; interceptMs: number; byPoint: { ffn: number; residualPct: number }[] } {
  const mx = mean(points.map((p) => p.ffn));
  const my = mean(points.map((p) => p.medianMs));
  let sxy = 0;
  let sxx = 0;
  for (const p of points) {
    sxy += (p.ffn - mx) * (p.medianMs - my);
    sxx += (p.ffn - mx) ** 2;
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  const intercept = my - slope * mx;
  return { slopeMsPerNeuron: slope, interceptMs: intercept, byPoint: points.map((p) => ({ ffn: p.ffn, residualPct: (100 * (p.medianMs - (intercept + slope * p.ffn))) / (intercept + slope * p.ffn) })) };
}

/** Widths grouped by the largest of 32/16/8/1 that divides them: mean and count of residuals. */
function byAlignment(r: { ffn: number; residualPct: number }[]): { multiple: number; widths: number; meanResidualPct: number }[] {
  const groups = [32, 16, 8, 1].map((m) => ({ multiple: m, values: [] as number[] }));
  for (const p of r) groups.find((g) => p.ffn % g.multiple === 0)!.values.push(p.residualPct);
  return groups.map((g) => ({ multiple: g.multiple, widths: g.values.length, meanResidualPct: mean(g.values) }));
}

interface PrunedRow {
  name: string;
  budget: 'params' | 'latency';
  widthMultiple: number;
  paramRatio: number;
  layers: number;
  ffnMultipleOf32: boolean;
  /** (LM head + kept block params) / (LM head + dense block params): step time if it ∝ weights read. */
  weightsReadBound: number;
  predictedStepRatio: number;
  /** Median over three rounds of (variant step / dense step), and the rounds' range. */
  measuredStepRatio: number;
  measuredRange: [number, number];
  pruneSeconds: number;
}

type WidthSweep = { points: WidthPoint[]; fit: ReturnType<typeof residuals>; alignment: ReturnType<typeof byAlignment> };

async function main(): Promise<void> {
  const started = Date.now();
  const loadStart = os.loadavg()[0]!;
  const dir = synthModelDir(args.preset, log);
  const model = await loadModel(dir);
  const spec = model.spec;
  const serving = targetFor('cpu', args.dtype as 'float32' | 'int8' | 'int4');
  log(`${args.preset}: ${spec.layers.length} layers, hidden ${spec.hidden}, ffn ${spec.layers[0]!.ffn}; ${threads} threads; load average ${loadStart.toFixed(2)}`);
  const sweep = await widthSweeps(spec);
  const profiles = await latencyProfiles(spec, serving);
  const rows = args['skip-prune'] ? [] : await prunedShapes(model, serving, profiles);

  const report = {
    generatedBy: `node --import tsx scripts/bench-width.ts ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString(),
    note: args.note,
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAverageStart: loadStart, loadAverageEnd: os.loadavg()[0] },
    model: { preset: args.preset, layers: spec.layers.length, hidden: spec.hidden, ffn: spec.layers[0]!.ffn, vocab: spec.vocabSize },
    threads,
    serving: describeTarget(serving),
    sweep,
    profiles,
    pruned: rows,
    minutes: (Date.now() - started) / 60_000,
  };
  const outDir = path.resolve(repoRoot, args['out-dir']!);
  await fs.mkdir(outDir, { recursive: true });
  await fs.writeFile(path.join(outDir, 'width-report.json'), JSON.stringify(report, null, 2) + '\n');
  await fs.writeFile(path.join(outDir, 'width-report.md'), renderMarkdown(report));
  log(`wrote ${path.relative(repoRoot, path.join(outDir, 'width-report.md'))} (${report.minutes.toFixed(1)} min)`);
}

/** Part 1: step time against MLP width, float32 and int8, with the residuals grouped by alignment. */
async function widthSweeps(spec: ModelSpec): Promise<Record<string, WidthSweep>> {
  // Part 1: widths around 60% of the model's MLP: every multiple of 8 within ±128 (9 of them
  // multiples of 32, 8 of 16, 16 of 8 only) and 32 odd widths between them.
  const centre = Math.round((0.6 * spec.layers[0]!.ffn) / 32) * 32;
  const widths = [...Array.from({ length: 33 }, (_, k) => centre - 128 + 8 * k), ...Array.from({ length: 32 }, (_, k) => centre - 125 + 8 * k)].sort((a, b) => a - b);
  const sweep: Record<string, WidthSweep> = {};
  for (const t of [cpuTarget, targetFor('cpu', 'int8')]) {
    const name = t.weights ?? t.dtype;
    log(`part 1 (${name}): 2 layers, ${widths.length} MLP widths in ${widths[0]}..${widths.at(-1)}, interleaved`);
    const points = await widthSweep(spec, widths, 2, t);
    const fit = residuals(points);
    sweep[name] = { points, fit, alignment: byAlignment(fit.byPoint) };
    log(`part 1 (${name}): ${sweep[name]!.alignment.map((a) => `×${a.multiple}: ${a.meanResidualPct.toFixed(2)}% (${a.widths})`).join(', ')}`);
  }
  return sweep;
}

/** Part 2: the latency profile, float32 and the serving type. */
async function latencyProfiles(spec: ModelSpec, serving: ExecutionTarget): Promise<Record<string, LatencyProfile>> {
  const profiles: Record<string, LatencyProfile> = {};
  for (const t of [cpuTarget, serving]) {
    const name = t.weights ?? t.dtype;
    if (profiles[name]) continue;
    profiles[name] = await measureLatencyProfile(spec, { target: t, threads });
    const c = profiles[name]!.coefficients;
    log(`part 2 (${name}): attention ${c.attentionFixedUs.toFixed(0)} µs + ${(c.attentionUsPerParam * 1e6).toFixed(1)} µs/M params, MLP ${c.mlpFixedUs.toFixed(0)} µs + ${(c.mlpUsPerParam * 1e6).toFixed(1)} µs/M params, base ${profiles[name]!.baseUs.toFixed(0)} µs`);
  }
  return profiles;
}

/** Part 3: prune with each budget and width multiple; time every result against dense. */
async function prunedShapes(model: LoadedModel, serving: ExecutionTarget, profiles: Record<string, LatencyProfile>): Promise<PrunedRow[]> {
  const spec = model.spec;
  const rows: PrunedRow[] = [];
  const variants: { name: string; budget: 'params' | 'latency'; widthMultiple: number }[] = [
    { name: 'params', budget: 'params', widthMultiple: 1 },
    { name: 'params ×32', budget: 'params', widthMultiple: 32 },
    { name: 'latency', budget: 'latency', widthMultiple: 1 },
    { name: 'latency ×32', budget: 'latency', widthMultiple: 32 },
  ];
  const pruned: { v: (typeof variants)[number]; spec: ModelSpec; weights: typeof model.weights; seconds: number; profile?: LatencyProfile }[] = [];
  for (const v of variants) {
    const recipe: PruneRecipe = { ...defaultPruneSettings(), target, recovery: 'none', samples: 8, seqLen: 64, budget: v.budget, widthMultiple: v.widthMultiple };
    const t0 = performance.now();
    log(`part 3: pruning to ${target} with budget ${v.budget}, width multiple ${v.widthMultiple}`);
    const r = await runPrune({ model, recipe, threads, servingTarget: serving });
    const seconds = (performance.now() - t0) / 1000;
    pruned.push({ v, spec: r.model.spec, weights: r.model.weights, seconds, ...(r.report.result.latency && { profile: r.report.result.latency.profile }) });
    log(`part 3: ${v.name}: ${r.model.spec.layers.length} layers, param ratio ${r.report.result.ratio.toFixed(3)}, ${seconds.toFixed(0)} s`);
  }
  // Three rounds, each a fresh set of sessions timed interleaved step by step: the median round
  // is the figure, the range says how much background load moved it.
  const rounds: number[][] = [];
  for (let round = 0; round < 3; round++) {
    log(`part 3: timing dense and every variant interleaved, round ${round + 1} of 3`);
    const timing = await timeDecodeInterleaved([{ spec, weights: model.weights }, ...pruned.map((p) => ({ spec: p.spec, weights: p.weights }))], { batch: 1, promptTokens: 64, steps: 60, warmup: 5, threads, target: serving, maxMs: 300_000 });
    rounds.push(timing.slice(1).map((t) => t.medianMs / timing[0]!.medianMs));
  }
  const lmHead = spec.vocabSize * spec.hidden;
  const denseBlocks = parameterCounts(spec).blocks;
  const servingProfile = profiles[serving.weights ?? serving.dtype]!;
  pruned.forEach((p, k) => {
    const blocks = parameterCounts(p.spec).blocks;
    rows.push({
      name: p.v.name,
      budget: p.v.budget,
      widthMultiple: p.v.widthMultiple,
      paramRatio: 1 - blocks / denseBlocks,
      layers: p.spec.layers.length,
      ffnMultipleOf32: p.spec.layers.every((l) => l.ffn % 32 === 0),
      weightsReadBound: (lmHead + blocks) / (lmHead + denseBlocks),
      predictedStepRatio: predictedStepUs(p.profile ?? servingProfile, p.spec) / predictedStepUs(p.profile ?? servingProfile, spec),
      measuredStepRatio: median(rounds.map((r) => r[k]!)),
      measuredRange: [Math.min(...rounds.map((r) => r[k]!)), Math.max(...rounds.map((r) => r[k]!))],
      pruneSeconds: p.seconds,
    });
  });
  return rows;
}

function renderMarkdown(r: {
  generatedBy: string;
  date: string;
  note: string | undefined;
  machine: { cpus: number; cpu: string | undefined; node: string; loadAverageStart: number; loadAverageEnd: number | undefined };
  model: { preset: string | undefined; layers: number; hidden: number; ffn: number; vocab: number };
  threads: number;
  serving: string;
  sweep: Record<string, WidthSweep>;
  profiles: Record<string, LatencyProfile>;
  pruned: PrunedRow[];
  minutes: number;
}): string {
  const f = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : '–');
  const out: string[] = [];
  out.push('# Pruned shapes against their parameter share: MLP width alignment and latency-aware budgets', '');
  out.push(`Generated by \`${r.generatedBy}\` (\`npm run bench:width\`) on ${r.date.slice(0, 10)} in ${r.minutes.toFixed(1)} min; do not edit by hand. Data: [width-report.json](width-report.json).`, '');
  if (r.note) out.push(`> ${r.note}`, '');
  out.push(
    `Machine: ${r.machine.cpus} × ${r.machine.cpu ?? 'CPU'}, Node ${r.machine.node}; load average ${f(r.machine.loadAverageStart, 2)} at the start, ${f(r.machine.loadAverageEnd ?? Number.NaN, 2)} at the end (the machine is shared; every comparison below is timed interleaved step by step, so background load hits all sides alike). Model: synthetic \`${r.model.preset}\` (${r.model.layers} layers, hidden ${r.model.hidden}, MLP ${r.model.ffn}, vocabulary ${r.model.vocab}); ONNX Runtime CPU, ${r.threads} threads, batch 1, 64 cached tokens.`,
    '',
  );
  out.push('## 1. Decode-step time against kept MLP width', '');
  out.push('Two of the model\'s layers (full attention) with each of 65 MLP widths around 60% of the model\'s (every multiple of 8 within ±128, and 32 odd widths between them), a 256-token vocabulary (so the step is the blocks), median of 40 steps each. Residual: the width\'s time against a least-squares line through all widths, in % (negative = faster than its parameters say).', '');
  out.push('| weights | ms per neuron (slope) | intercept ms | width multiple of 32 | of 16 (not 32) | of 8 (not 16) | other |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, s] of Object.entries(r.sweep)) {
    const cell = (m: number) => {
      const a = s.alignment.find((x) => x.multiple === m)!;
      return `${f(a.meanResidualPct, 2)}% (${a.widths})`;
    };
    out.push(`| ${name} | ${f(s.fit.slopeMsPerNeuron, 5)} | ${f(s.fit.interceptMs, 3)} | ${cell(32)} | ${cell(16)} | ${cell(8)} | ${cell(1)} |`);
  }
  out.push('', '<details><summary>Every width</summary>', '', `| width | ${Object.keys(r.sweep).map((n) => `${n} ms | ${n} residual`).join(' | ')} |`, `| ---: | ${Object.keys(r.sweep).map(() => '---: | ---:').join(' | ')} |`);
  const first = Object.values(r.sweep)[0];
  first?.points.forEach((p, k) => {
    out.push(`| ${p.ffn} | ${Object.values(r.sweep).map((s) => `${f(s.points[k]!.medianMs, 3)} | ${f(s.fit.byPoint[k]!.residualPct, 2)}%`).join(' | ')} |`);
  });
  out.push('', '</details>', '');
  out.push('## 2. The engine\'s latency profile (what `--budget latency` prunes by)', '');
  out.push('Fitted per sub-block from probe models (src/mop/latency-profile.ts): a fixed cost while the sub-block exists, plus a cost per parameter it reads. "Fixed share" is the fixed cost\'s share of one full sub-block of this model.', '');
  out.push('| weights | attention fixed µs | attention µs / M params | attention fixed share | MLP fixed µs | MLP µs / M params | MLP fixed share | head + overhead µs |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, p] of Object.entries(r.profiles)) {
    const c = p.coefficients;
    const probe = (n: string) => p.measured.probes.find((x) => x.name === n)!;
    const head = probe('small-head').medianMs;
    const share = (full: string) => {
      const perLayer = ((probe(full).medianMs - head) * 1000) / p.measured.layersPerProbe;
      return perLayer > 0 ? (full.startsWith('attention') ? c.attentionFixedUs : c.mlpFixedUs) / perLayer : Number.NaN;
    };
    out.push(`| ${name} | ${f(c.attentionFixedUs, 1)} | ${f(c.attentionUsPerParam * 1e6, 1)} | ${f(100 * share('attention-full'), 1)}% | ${f(c.mlpFixedUs, 1)} | ${f(c.mlpUsPerParam * 1e6, 1)} | ${f(100 * share('mlp-full'), 1)}% | ${f(p.baseUs, 0)} |`);
  }
  out.push('');
  if (r.pruned.length) {
    out.push(`## 3. Pruned to the target: parameter ratio, weights-read bound, predicted and measured step ratio (${r.serving})`, '');
    out.push('Each variant pruned by `runPrune` (MoP, recovery none, 8 × 64 calibration tokens), then dense and every variant timed interleaved (median of 60 decode steps, batch 1) in three rounds, each with fresh sessions; the measured ratio is the median round, with the rounds\' range. Weights-read bound: (LM head + kept block parameters) / (LM head + dense block parameters), the step ratio if time were proportional to weights read. Predicted: the serving profile\'s step ratio. With `--budget latency` the target counts the blocks\' predicted step time, so its parameter ratio differs from the target.', '');
    out.push('| variant | budget | width multiple | layers | MLP widths all ×32 | parameter ratio | weights-read bound | predicted step ratio | measured step ratio [rounds] | measured − bound | prune s |', '| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const p of r.pruned) {
      out.push(`| ${p.name} | ${p.budget} | ${p.widthMultiple} | ${p.layers} | ${p.ffnMultipleOf32 ? 'yes' : 'no'} | ${f(p.paramRatio)} | ${f(p.weightsReadBound)} | ${f(p.predictedStepRatio)} | ${f(p.measuredStepRatio)} [${f(p.measuredRange[0])}–${f(p.measuredRange[1])}] | ${(p.measuredStepRatio - p.weightsReadBound >= 0 ? '+' : '') + f(p.measuredStepRatio - p.weightsReadBound)} | ${f(p.pruneSeconds, 0)} |`);
    }
    out.push('');
  }
  return out.join('\n') + '\n';
}

await main();
