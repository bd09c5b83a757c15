/**
 * `npm run bench:speedup`: does pruning buy latency under real traffic? For each model, the real
 * server runs in this process on 127.0.0.1 with the dense model, prunes variants through its admin
 * API (MoP, depth-only, width-only at each ratio), serves them side by side, and the Node load
 * generator drives identical load at each concurrency against dense and every variant. Client-side
 * figures and the server's own Prometheus histograms give the latency ratio pruned / dense twice;
 * a decode-step profile explains it, and the llama.cpp peer (scripts/bench-llamacpp.ts, run as a
 * child process) gives dense decode tokens/s beside ours. Writes docs/speedup-report.md, .json and
 * docs/speedup-latency.svg.
 *
 *   node --import tsx scripts/bench-speedup.ts [--models bundled,100m] [--strategies mop,depth,width]
 *     [--ratios 0.2,0.4,0.6] [--concurrency 1,8] [--requests 16,32] [--max-tokens 64] [--rounds auto|N]
 *     [--samples 8] [--seq-len 64] [--threads N] [--ort-spin on|off] [--max-loaded 3] [--dtype float32|int8|int4]
 *     [--peer-quants f32,q8_0] [--no-peer | --peer-json FILE] [--budget params|latency]
 *     [--out-dir docs] [--quick] [--render-only REPORT.json[,REPORT2.json] [--peer-json PEER.json,...] [--pruned-peer-json PEER.json,...]]
 *
 * Models: `bundled` (stories260K), `100m` (synthetic, ~100M parameters), `1b` (synthetic, ~1.1B:
 * ~13 GB per served variant in f32 and pruning takes long; asked for explicitly only),
 * `500m` (the representative shape for the paper's claim: LLaMA proportions made deep enough that
 * the LM head is 6.8% of the weights a step reads, as in LLaMA 7–8B; run it with --dtype int8),
 * `tinyllama-1b` (6.3%, but MoP's float32 passes need over 22 GB: serve it, do not prune it here).
 * --budget latency prunes every variant to a share of decode-step time (latency-aware MoP, the
 * engine's own profile) instead of block parameters; the report then shows the 40% targets'
 * figures without judging them (they are defined at 40% parameter compression).
 * --dtype int8|int4 serves every model (dense and pruned; pruning stays float32) with
 * block-quantized weights, and the llama.cpp peer then runs the same blocks as GGUF Q8_0 / Q4_0
 * (--peer-quants, default: the served quantization, plus F32 for models under 1B parameters).
 * Default run: ~15 min on 2 cores. `--quick`: a ~2-minute smoke run (one ratio, 0.4; 4 requests at
 * c=1 and 8 at c=8 of 16 tokens; 4×32 calibration tokens; the peer at one thread count) written to
 * bench-out/speedup-quick/ unless --out-dir is given. `--render-only`
 * rewrites the Markdown and SVG from an existing report JSON without measuring anything; given
 * several, it merges them (e.g. the small models at full settings and tinyllama-1b at --quick).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadPrompts } from '../loadtest/prompts.ts';
import { DEFAULT_PROMPTS_FILE } from '../loadtest/options.ts';
import { parseDtypeRequest, targetFor, type ExecutionTarget } from '../src/runtime/device/device.ts';
import { parameterCounts, type ModelSpec } from '../src/runtime/model/spec.ts';
import { syntheticPresets, syntheticSpec } from '../src/runtime/model/synthetic.ts';
import { paramShares } from './speedup/decode-profile.ts';
import { type PeerQuant, peerQuants, type PeerReport } from './speedup/llamacpp-peer.ts';
import { renderMarkdown } from './speedup/markdown.ts';
import { measureModel } from './speedup/measure.ts';
import { approxServedBytes, type BenchModelName, isBenchModelName } from './lib/bench-model.ts';
import { chartPanels, evaluateTargets, type ModelSection, type SpeedupReport, type StrategyName } from './speedup/report.ts';
import { renderLatencyChart } from './speedup/svg.ts';
import { parseScriptArgs } from './lib/script-args.ts';
import { log } from './lib/log.ts';
import { isPositiveInt, listOption, numberOption, onOffOption } from './lib/option-values.ts';

const started = performance.now();
const args = parseScriptArgs(import.meta.url, {
  models: { type: 'string' },
  strategies: { type: 'string' },
  ratios: { type: 'string' },
  concurrency: { type: 'string' },
  requests: { type: 'string' },
  'max-tokens': { type: 'string' },
  rounds: { type: 'string' },
  samples: { type: 'string' },
  'seq-len': { type: 'string' },
  threads: { type: 'string' },
  'ort-spin': { type: 'string' },
  'max-loaded': { type: 'string' },
  dtype: { type: 'string' },
  budget: { type: 'string' },
  'peer-quants': { type: 'string' },
  tolerance: { type: 'string' },
  prompts: { type: 'string' },
  'no-peer': { type: 'boolean', default: false },
  'peer-json': { type: 'string' },
  'pruned-peer-json': { type: 'string' },
  'out-dir': { type: 'string' },
  quick: { type: 'boolean', default: false },
  'render-only': { type: 'string' },
});

/** speedup-report.json, speedup-report.md and speedup-latency.svg in `dir`. */
function writeReport(report: SpeedupReport, dir: string): void {
  const boundAt = (model: string, r: number) => {
    const s = report.models.find((m) => m.model === model);
    if (!s) return undefined;
    const head = s.dense.lmHead;
    return (head + (1 - r) * s.dense.blocks) / (head + s.dense.blocks);
  };
  fs.mkdirSync(dir, { recursive: true });
  const files = { md: path.join(dir, 'speedup-report.md'), json: path.join(dir, 'speedup-report.json'), svg: path.join(dir, 'speedup-latency.svg') };
  fs.writeFileSync(files.json, JSON.stringify(report, null, 2) + '\n');
  const columns = Math.min(report.settings.concurrency.length, 3);
  fs.writeFileSync(files.svg, renderLatencyChart(chartPanels(report, boundAt), { title: 'End-to-end latency ratio (pruned / dense, p50) vs compression', columns }));
  const bound1b = paramShares(syntheticSpec(syntheticPresets['1b'])).predictedRatio(0.4);
  fs.writeFileSync(files.md, renderMarkdown(report, { svgFile: path.basename(files.svg), jsonFile: path.basename(files.json), bound1b }));
}

const PRUNED_SOURCE = '(pruned files and their dense files): ';

/** Whether a pruned-peer source line names only rows now replaced (so it no longer describes the report). */
function describesOnly(line: string, replaced: ReadonlySet<string>): boolean {
  const at = line.indexOf(PRUNED_SOURCE);
  if (at < 0) return false;
  const rows = line.slice(at + PRUNED_SOURCE.length, line.indexOf(' (', at + PRUNED_SOURCE.length)).split(', ');
  return rows.every((r) => replaced.has(r));
}

if (args['render-only']) {
  // Several reports (comma-separated) merge into one: their models and peer results side by side,
  // the first one's settings and machine; each run's command is listed.
  const files = listOption(args['render-only']);
  const runs = files.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')) as SpeedupReport);
  const report = runs[0]!;
  if (runs.length > 1) {
    report.runs = runs.map((r) => ({ command: r.command, date: r.date, durationSec: r.durationSec, models: r.models.map((m) => m.model), dtype: r.settings.dtype ?? 'float32', loadAvgStart: r.machine.loadAvgStart }));
    report.models = runs.flatMap((r) => r.models);
    const peers = runs.flatMap((r) => (r.peer ? [r.peer] : []));
    if (peers.length) report.peer = { ...peers[0]!, available: peers.some((p) => p.available), models: peers.flatMap((p) => p.models) };
    report.settings.models = report.models.map((m) => m.model);
    report.durationSec = runs.reduce((t, r) => t + r.durationSec, 0);
  }
  // Pruned-peer pairs measured on their own (scripts/bench-llamacpp.ts --pruned) join or replace the reports', dense rows untouched.
  if (args['pruned-peer-json'] && report.peer) {
    for (const f of listOption(args['pruned-peer-json'])) {
      const extra = JSON.parse(fs.readFileSync(f, 'utf8')) as PeerReport;
      const key = (m: PeerReport['models'][number]) => `${m.model}/${m.quant ?? 'f32'}`;
      const replaced = new Set((extra.pruned ?? []).map((p) => key(p.pruned)));
      report.peer.pruned = [...(report.peer.pruned ?? []).filter((p) => !replaced.has(key(p.pruned))), ...(extra.pruned ?? [])];
      report.peerExtra = [...(report.peerExtra ?? []).filter((line) => !describesOnly(line, replaced)), `${f} ${PRUNED_SOURCE}${(extra.pruned ?? []).map((p) => key(p.pruned)).join(', ')} (${extra.date.slice(0, 16).replace('T', ' ')} UTC, ${extra.reps} repetitions, ${extra.tokens} tokens, threads ${extra.threads.join(', ')}, load average ${Math.min(...(extra.pruned ?? []).flatMap((p) => p.pruned.runs.map((r) => r.loadAvg[0]))).toFixed(1)}+)`];
    }
  }
  // Peer results measured on their own (scripts/bench-llamacpp.ts --out X.json) replace or join the reports'.
  if (args['peer-json'] && report.peer) {
    for (const f of listOption(args['peer-json'])) {
      const extra = JSON.parse(fs.readFileSync(f, 'utf8')) as PeerReport;
      const key = (m: PeerReport['models'][number]) => `${m.model}/${m.quant ?? 'f32'}`;
      const replaced = new Set(extra.models.map(key));
      report.peer.models = [...report.peer.models.filter((m) => !replaced.has(key(m))), ...extra.models];

      report.peerExtra = [...(report.peerExtra ?? []), `${f}: ${extra.models.map(key).join(', ')} (${extra.date.slice(0, 16).replace('T', ' ')} UTC, ${extra.reps} repetitions, ${extra.tokens} tokens, threads ${extra.threads.join(', ')})`];
    }
  }
  report.targets = evaluateTargets(report);
  const dir = args['out-dir'] ?? path.dirname(files[0]!);
  writeReport(report, dir);
  process.stderr.write(`re-rendered ${dir}/speedup-report.{md,json} and speedup-latency.svg from ${files.join(', ')} (targets re-evaluated)\n`);
  process.exit(0);
}

const quick = args.quick;
/** The spec of a bench model without building its weights (the bundled model is tiny). */
const syntheticSpecOf = (m: string): ModelSpec => (m === 'bundled' ? syntheticSpec(syntheticPresets.tiny) : syntheticSpec(syntheticPresets[m as keyof typeof syntheticPresets]));

const models = listOption(args.models ?? 'bundled,100m');
for (const m of models) if (!isBenchModelName(m) || m === 'tiny') throw new Error(`--models: unknown model '${m}' (bundled, 100m, 500m, 1b, tinyllama-1b)`);
const dtype = parseDtypeRequest(args.dtype ?? 'float32');
if (dtype !== 'float32' && dtype !== 'int8' && dtype !== 'int4') throw new Error(`--dtype: bench:speedup runs on the CPU: float32, int8 or int4, not '${args.dtype}'`);
const target: ExecutionTarget = targetFor('cpu', dtype);
const servedQuant: PeerQuant = dtype === 'int8' ? 'q8_0' : dtype === 'int4' ? 'q4_0' : 'f32';
const peerQuantList = listOption(args['peer-quants'] ?? (servedQuant === 'f32' ? 'f32' : `${servedQuant},f32`));
for (const q of peerQuantList) if (!(peerQuants as readonly string[]).includes(q)) throw new Error(`--peer-quants: unknown '${q}' (${peerQuants.join(', ')})`);
const budget = args.budget ?? 'params';
if (budget !== 'params' && budget !== 'latency') throw new Error(`--budget: params or latency, not '${budget}'`);
const strategies = listOption(args.strategies ?? 'mop,depth,width') as StrategyName[];
for (const s of strategies) if (!['mop', 'depth', 'width'].includes(s)) throw new Error(`--strategies: unknown strategy '${s}'`);
const ratios = listOption(args.ratios ?? (quick ? '0.4' : '0.2,0.4,0.6')).map((r) => numberOption('ratios', r, (n) => n > 0 && n < 0.95));
const concurrency = listOption(args.concurrency ?? '1,8').map((c) => numberOption('concurrency', c, isPositiveInt));
const requestList = args.requests ? listOption(args.requests).map((r) => numberOption('requests', r, isPositiveInt)) : concurrency.map((c) => (quick ? (c === 1 ? 4 : c) : c === 1 ? 16 : 4 * c));
if (requestList.length !== 1 && requestList.length !== concurrency.length) throw new Error('--requests: one number, or one per --concurrency level');
const requests = new Map(concurrency.map((c, i) => [c, requestList.length === 1 ? requestList[0]! : requestList[i]!]));
const maxTokens = numberOption('max-tokens', args['max-tokens'] ?? (quick ? '16' : '64'), isPositiveInt);
const rounds: number | 'auto' = (args.rounds ?? 'auto') === 'auto' ? 'auto' : numberOption('rounds', args.rounds!, isPositiveInt);
const samples = numberOption('samples', args.samples ?? (quick ? '4' : '8'), isPositiveInt);
const seqLen = numberOption('seq-len', args['seq-len'] ?? (quick ? '32' : '64'), (n) => isPositiveInt(n) && n >= 2);
const threads = numberOption('threads', args.threads ?? String(os.availableParallelism()), isPositiveInt);
const ortSpinArg = args['ort-spin'] ?? 'off';
const ortSpin = onOffOption('ort-spin', ortSpinArg);
const maxLoaded = numberOption('max-loaded', args['max-loaded'] ?? '3', isPositiveInt);
const tolerance = numberOption('tolerance', args.tolerance ?? '0.1', (n) => n > 0 && n < 1);
const outDir = args['out-dir'] ?? (quick ? 'bench-out/speedup-quick' : 'docs');
const promptsFile = args.prompts ?? DEFAULT_PROMPTS_FILE;
const prompts = await loadPrompts(promptsFile);

const argv = process.argv.slice(2);
const command = `node --import tsx scripts/bench-speedup.ts${argv.length ? ' ' + argv.join(' ') : ''}`;
const loadAvgStart = os.loadavg();
log(`bench:speedup: models ${models.join(', ')}; strategies ${strategies.join(', ')}; ratios ${ratios.join(', ')}; concurrency ${concurrency.join(', ')}; load average ${loadAvgStart[0]!.toFixed(2)} on ${os.availableParallelism()} cores`);
if (loadAvgStart[0]! > os.availableParallelism() * 0.75) log(`warning: the machine is busy (load average ${loadAvgStart[0]!.toFixed(2)}); absolute latencies will be noisy`);

const sections: ModelSection[] = [];
for (const name of models as BenchModelName[]) {
  const perVariant = approxServedBytes(name);
  let loadedCap = maxLoaded;
  if (name === '1b' || name === 'tinyllama-1b') {
    log(`warning: ${name} is ~1.1B parameters: ~13 GB per served variant in f32 (weights + ONNX Runtime copy), pruning takes many minutes per variant, and a decode step is ~10× the 100m one; one pruned variant at a time`);
    loadedCap = 1;
  }
  const fits = Math.floor(os.freemem() / perVariant) - 1;
  if (fits < loadedCap) {
    loadedCap = Math.max(1, fits);
    log(`warning: ${(os.freemem() / 2 ** 30).toFixed(1)} GiB free, ~${(perVariant / 2 ** 30).toFixed(1)} GiB per variant of ${name}: at most ${loadedCap} pruned variant(s) loaded at once`);
  }
  sections.push(
    await measureModel({
      model: name,
      strategies,
      ratios,
      concurrency,
      requests,
      rounds,
      maxTokens,
      prompts,
      samples,
      seqLen,
      threads,
      ortSpin,
      maxLoaded: loadedCap,
      tolerance,
      runTimeoutSec: 600,
      pruneTimeoutSec: name === '1b' || name === 'tinyllama-1b' ? 3600 : 900,
      target,
      budget,
      profile: quick ? { steps: 8, warmup: 2, promptTokens: 32 } : { steps: 32, warmup: 4, promptTokens: 64 },
      log,
    }),
  );
}

// The llama.cpp peer, in a child process (its native library and memory go away with it).
let peer: PeerReport | null = null;
let peerError: string | null = null;
if (args['peer-json']) {
  try {
    peer = JSON.parse(fs.readFileSync(args['peer-json'], 'utf8')) as PeerReport;
  } catch (e) {
    peerError = `could not read ${args['peer-json']}: ${e instanceof Error ? e.message : String(e)}`;
  }
} else if (!args['no-peer']) {
  // One child per model: F32 of a 1B model is 4.4 GB per engine and minutes per repetition, so
  // models of 1B parameters and more get only the served quantization. Threads pinned: all cores, then 1.
  const parts: PeerReport[] = [];
  for (const m of models) {
    const big = parameterCounts(syntheticSpecOf(m)).total >= 1e9;
    const quants = big ? peerQuantList.filter((q) => q !== 'f32') : peerQuantList;
    if (quants.length === 0) continue;
    const peerOut = path.join('bench-out', 'speedup', `llamacpp-${m}${quick ? '-quick' : ''}.json`);
    const peerArgs = ['--import', 'tsx', 'scripts/bench-llamacpp.ts', '--models', m, '--quants', quants.join(','), '--threads', threads > 1 ? `${threads},1` : String(threads), '--tokens', String(maxTokens), '--reps', quick ? '3' : '5', '--ort-spin', ortSpinArg, '--out', peerOut];
    log(`llama.cpp peer: node ${peerArgs.join(' ')}`);
    fs.rmSync(peerOut, { force: true });
    const r = spawnSync(process.execPath, peerArgs, { stdio: ['ignore', 'inherit', 'inherit'], timeout: 30 * 60_000 });
    try {
      parts.push(JSON.parse(fs.readFileSync(peerOut, 'utf8')) as PeerReport);
    } catch {
      peerError = `scripts/bench-llamacpp.ts ${r.error ? `failed: ${r.error.message}` : `exited with status ${r.status}${r.signal ? ` (${r.signal})` : ''}`} and wrote no report`;
      log(peerError);
    }
  }
  if (parts.length) peer = { ...parts[0]!, available: parts.some((p) => p.available), models: parts.flatMap((p) => p.models), pruned: parts.flatMap((p) => p.pruned ?? []) };
} else peerError = 'skipped (--no-peer)';

const report: SpeedupReport = {
  version: 1,
  date: new Date().toISOString(),
  command,
  durationSec: 0,
  machine: {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memGiB: os.totalmem() / 2 ** 30,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    loadAvgStart,
    loadAvgEnd: os.loadavg(),
    threads,
    ortSpin,
  },
  settings: {
    quick,
    dtype,
    budget,
    models,
    strategies,
    ratios,
    concurrency,
    requests: Object.fromEntries(requests),
    maxTokens,
    rounds,
    samples,
    seqLen,
    maxLoaded,
    tolerance,
    promptsFile: path.relative(process.cwd(), promptsFile),
    promptCount: prompts.length,
  },
  models: sections,
  peer,
  peerError,
  targets: [],
};
report.targets = evaluateTargets(report);
report.durationSec = (performance.now() - started) / 1000;

writeReport(report, outDir);
log(`written ${outDir}/speedup-report.{md,json}, ${outDir}/speedup-latency.svg in ${(report.durationSec / 60).toFixed(1)} min`);
for (const t of report.targets) log(`target ${t.model} ${t.id}: ${t.measured} → ${t.met === null ? (t.value === null ? 'not measured' : `not judged (${t.note})`) : t.met ? 'met' : 'MISSED'}`);
