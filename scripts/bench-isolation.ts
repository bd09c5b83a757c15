/**
 * `npm run bench:isolation`: does a prune starve the server it runs in? The server runs as a child
 * process (`node bin/mop.js serve`, a synthetic model written by `mop synth`); closed-loop streaming
 * /v1/completions traffic runs at each concurrency through three phases — before (load only),
 * during (a `POST /admin/prune` job, polled to its end, not activated) and after — while /health and
 * /metrics are probed every 100 ms and /ready every 500 ms. Writes docs/isolation-report.md + .json
 * (figures, the targets met or not, the command, the machine, the thread settings) and copies under
 * bench-out/.
 *
 *   node --import tsx scripts/bench-isolation.ts [--quick] [--model DIR | --preset 100m]
 *     [--concurrency 4,8] [--phase-sec 20] [--max-tokens 32] [--target 0.4] [--samples 8]
 *     [--seq-len 64] [--recovery none] [--max-batch 8] [--prune-timeout-sec 900] [--note TEXT]
 *     [--out-dir docs] [--name isolation-report] [--render-only REPORT.json [--note TEXT]]
 *
 * The server gets MOP_THREADS=1 and MOP_PRUNE_THREADS=1 (serving and pruning one thread each; a
 * server that does not know MOP_PRUNE_THREADS ignores it, and the report quotes the server's own
 * thread configuration lines). The built CLI is run: `npm run build` first after changing src/.
 * `--quick`: 5 s phases, a 4 × 32-token prune, 16-token requests, written to bench-out/isolation-quick/
 * unless --out-dir is given. Everything is bounded: requests per phase, the prune job's time, and
 * each request's and probe's timeout; all traffic is loopback.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_PROMPTS_FILE } from '../loadtest/options.ts';
import { loadPrompts } from '../loadtest/prompts.ts';
import { closedLoop } from './isolation/closed-loop.ts';
import { renderIsolationReport } from './isolation/markdown.ts';
import { type PhaseWindow, phaseFigures, type RequestSample } from './isolation/phases.ts';
import { Prober } from './isolation/prober.ts';
import type { ConcurrencyResult, IsolationReport } from './isolation/report.ts';
import { startServerProcess } from './isolation/server-process.ts';
import { printedSetting, shellCommand } from './isolation/server-settings.ts';
import { evaluateTargets } from './isolation/targets.ts';
import { AdminClient, type PruneJobResult } from './speedup/admin-client.ts';
import { parseScriptArgs } from './lib/script-args.ts';
import { log } from './lib/log.ts';
import { isPositiveInt, listOption, numberOption } from './lib/option-values.ts';
import { repoRoot } from './lib/repo-root.ts';
import { synthModelDir } from './lib/synth-model-dir.ts';

const started = performance.now();
const args = parseScriptArgs(import.meta.url, {
  quick: { type: 'boolean', default: false },
  model: { type: 'string' },
  preset: { type: 'string', default: '100m' },
  concurrency: { type: 'string' },
  'phase-sec': { type: 'string' },
  'max-tokens': { type: 'string' },
  target: { type: 'string' },
  samples: { type: 'string' },
  recovery: { type: 'string', default: 'none' },
  'seq-len': { type: 'string' },
  'max-batch': { type: 'string' },
  'prune-timeout-sec': { type: 'string' },
  note: { type: 'string' },
  'out-dir': { type: 'string' },
  name: { type: 'string', default: 'isolation-report' },
  'render-only': { type: 'string' },
});

if (args['render-only']) {
  // Rewrite the Markdown from a report JSON (targets re-evaluated; --note replaces the note) without measuring.
  const report = JSON.parse(fs.readFileSync(args['render-only'], 'utf8')) as IsolationReport;
  if (args.note !== undefined) report.note = args.note;
  report.targets = report.results.flatMap((r) => evaluateTargets(r.concurrency, r.phases));
  report.allTargetsMet = report.targets.every((t) => t.met);
  const base = args['render-only'].replace(/\.json$/, '');
  fs.writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + '\n');
  fs.writeFileSync(`${base}.md`, renderIsolationReport(report));
  process.stderr.write(`re-rendered ${base}.md (and .json) from ${args['render-only']}\n`);
  process.exit(0);
}

const quick = args.quick;
const concurrency = listOption(args.concurrency ?? '4,8').map((c) => numberOption('concurrency', c, isPositiveInt));
const phaseSec = numberOption('phase-sec', args['phase-sec'] ?? (quick ? '5' : '20'), (n) => n > 0 && n <= 600);
const maxTokens = numberOption('max-tokens', args['max-tokens'] ?? (quick ? '16' : '32'), isPositiveInt);
const target = numberOption('target', args.target ?? '0.4', (n) => n > 0 && n <= 0.9);
// The prune's own work, not its quality, is what loads the server: recovery fine-tuning on the 100M
// shape takes seconds per step, so it is off unless asked for (--recovery lora|full).
const recovery = args.recovery as 'none' | 'lora' | 'full';
if (!['none', 'lora', 'full'].includes(recovery)) throw new Error(`--recovery: expected none, lora or full, got '${recovery}'`);
const samples = numberOption('samples', args.samples ?? (quick ? '4' : '8'), isPositiveInt);
const seqLen = numberOption('seq-len', args['seq-len'] ?? (quick ? '32' : '64'), (n) => isPositiveInt(n) && n >= 2);
const maxBatch = numberOption('max-batch', args['max-batch'] ?? '8', isPositiveInt);
const pruneTimeoutSec = numberOption('prune-timeout-sec', args['prune-timeout-sec'] ?? '900', isPositiveInt);
const outDir = args['out-dir'] ?? (quick ? 'bench-out/isolation-quick' : 'docs');
const name = args.name;
const requestTimeoutSec = 120;
/** Bound on requests per phase (a phase is normally bounded by time long before this). */
const maxRequestsPerPhase = 5000;

const argv = process.argv.slice(2);
const command = `npm run bench:isolation${argv.length ? ' -- ' + shellCommand(argv) : ''}`;
const loadAvgStart = os.loadavg()[0]!;
const prompts = await loadPrompts(DEFAULT_PROMPTS_FILE);
fs.mkdirSync(path.join(repoRoot, 'bench-out'), { recursive: true });

/** The model directory: --model, or `mop synth --preset P` cached under bench-out/. */
function modelDir(): string {
  if (args.model) return path.resolve(args.model);
  return synthModelDir(args.preset, log);
}

const model = modelDir();
const serverEnv = { MOP_THREADS: '1', MOP_PRUNE_THREADS: '1' };
const token = randomBytes(16).toString('hex');
log(`starting the server on ${path.relative(repoRoot, model) || model} (${Object.entries(serverEnv).map(([k, v]) => `${k}=${v}`).join(' ')}); load average ${loadAvgStart.toFixed(2)} on ${os.availableParallelism()} cores`);
const server = await startServerProcess({
  repoRoot,
  args: ['-m', model, '--admin-token', token, '--max-batch', String(maxBatch)],
  env: serverEnv,
  logFile: path.join(repoRoot, 'bench-out', `${name}-server.log`),
  readyTimeoutMs: 600_000,
});
const settingsShown = Object.fromEntries(Object.keys(serverEnv).map((k) => [k, printedSetting(server.log(), k)]));

const admin = new AdminClient(server.url, token, pruneTimeoutSec * 1000);
const results: ConcurrencyResult[] = [];
let promptCursor = 0;
try {
  for (const c of concurrency) {
    const prober = new Prober(server.url);
    const requests: RequestSample[] = [];
    const windows: PhaseWindow[] = [];
    const loadFor = async (done: () => boolean) => {
      const got = await closedLoop({ url: server.url, concurrency: c, prompts, maxTokens, done, maxRequests: maxRequestsPerPhase, timeoutSec: requestTimeoutSec, firstPrompt: promptCursor });
      promptCursor += got.length;
      requests.push(...got);
    };
    const timedPhase = async (phase: 'before' | 'after') => {
      log(`c=${c}: ${phase}: ${phaseSec} s of load`);
      const startMs = performance.now();
      const endMs = startMs + phaseSec * 1000;
      await loadFor(() => performance.now() >= endMs);
      windows.push({ phase, startMs, endMs });
    };

    prober.start();
    await timedPhase('before');

    log(`c=${c}: during: POST /admin/prune target ${target}, ${samples} × ${seqLen} calibration tokens`);
    let jobDone = false;
    const duringStart = performance.now();
    const job: Promise<PruneJobResult> = admin
      .prune({ target, strategy: 'mop', id: `isolation-c${c}`, activate: false, samples, seq_len: seqLen, recovery }, { timeoutMs: pruneTimeoutSec * 1000, pollMs: 100, onProgress: (l) => log(`c=${c}: prune ${l}`) })
      .finally(() => (jobDone = true));
    const duringLoad = loadFor(() => jobDone);
    const result = await job.catch((e: unknown): PruneJobResult => ({ jobId: '', status: 'error', variant: null, error: e instanceof Error ? e.message : String(e), report: undefined, seconds: (performance.now() - duringStart) / 1000 }));
    windows.push({ phase: 'during', startMs: duringStart, endMs: performance.now() });
    await duringLoad;
    log(`c=${c}: prune job ${result.status} in ${result.seconds.toFixed(1)} s`);

    await timedPhase('after');
    await prober.close();
    if (prober.skipped > 0) log(`c=${c}: ${prober.skipped} probes skipped (too many unanswered)`);
    if (result.variant) await admin.unload(result.variant).catch((e: unknown) => log(`could not unload ${result.variant}: ${String(e)}`));

    const phases = phaseFigures(windows, prober.samples, requests);
    for (const p of phases) {
      const h = p.probes['/health'].latency;
      log(`c=${c}: ${p.phase}: /health p99 ${h?.p99.toFixed(1)} ms max ${h?.max.toFixed(1)} ms; requests ${p.requests.ok} ok ${p.requests.failed} failed; e2e p99 ${p.requests.e2eMs?.p99.toFixed(0)} ms`);
    }
    results.push({ concurrency: c, pruneJob: { status: result.status, seconds: result.seconds, error: result.error, variant: result.variant }, skippedProbes: prober.skipped, phases });
  }
} finally {
  await admin.close();
  await server.stop();
}

const targets = results.flatMap((r) => evaluateTargets(r.concurrency, r.phases));
const report: IsolationReport = {
  version: 1,
  tool: 'bench-isolation',
  startedAt: new Date(Date.now() - (performance.now() - started)).toISOString(),
  command,
  note: args.note ?? null,
  quick,
  machine: {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: os.totalmem() / 2 ** 30,
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    loadAverage: { start: loadAvgStart, end: os.loadavg()[0]! },
  },
  server: { model: args.model ? model : `mop synth --preset ${args.preset}`, env: serverEnv, settingsShown, maxBatch },
  load: { maxTokens, phaseSec, stream: true, ignoreEos: true },
  prune: { target, samples, seqLen, strategy: 'mop', recovery },
  results,
  targets,
  allTargetsMet: targets.every((t) => t.met),
  elapsedSec: (performance.now() - started) / 1000,
};

const markdown = renderIsolationReport(report);
const json = JSON.stringify(report, null, 2) + '\n';
for (const dir of new Set([path.resolve(repoRoot, outDir), path.join(repoRoot, 'bench-out')])) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `${name}.md`), markdown);
  fs.writeFileSync(path.join(dir, `${name}.json`), json);
}
process.stdout.write(markdown);
log(`wrote ${path.join(outDir, name)}.md and .json (copies in bench-out/); targets ${report.allTargetsMet ? 'met' : 'NOT met'}; ${report.elapsedSec.toFixed(0)} s`);
