/**
 * `npm run bench:faults`: does every request get an answer when things go wrong? Each scenario
 * starts its own server as a child process (127.0.0.1, port 0; `mop serve` from the sources, or
 * scripts/faults/fault-server.ts where an engine fault is injected), runs closed-loop traffic,
 * injects one fault, and records for every request how it ended: HTTP status (with the error
 * code), a stream ended with finish_reason or with an error event, a cut connection, or nothing
 * within the bounded wait — "never answered", which must be 0. Also: time to detection (first
 * 503, /ready, /health), the change of `mop_requests_total{outcome}` on /metrics, the server's
 * RSS before and after, and checks of what the scenario expects. Scenarios:
 *
 *   engine-crash          the engine worker thread exits under streaming load (injected)
 *   admin-restart         POST /admin/models/{id}/restart under streaming load
 *   engine-stall          the engine thread blocks (injected Atomics.wait) with --engine-stall-ms short
 *   scoring-flood         concurrent echo+logprobs scoring requests beyond --max-queue (429s expected)
 *   generation-flood      concurrent generations beyond --max-queue (429s expected)
 *   stalled-readers       SSE clients that never read their stream (raw sockets) beside normal load
 *   disconnects           streams abandoned after a few chunks, then normal requests
 *   unload-generation     DELETE /admin/models/{id} while streams run on that variant
 *   unload-scoring        DELETE /admin/models/{id} while scoring requests run on it
 *   bad-calibration       prunes naming unreadable calibration paths, then a normal prune
 *   sigterm-startup       SIGTERM while the server loads its model
 *   sigterm-load          SIGTERM under streaming load (short --shutdown-grace-ms)
 *   manifest-write-failure the model store turns read-only after start; admin changes and a prune
 *   soak                  RSS across N requests of each kind (generation, streaming, scoring, chat) on the bundled model
 *
 *   node --import tsx scripts/bench-faults.ts [--quick] [--model 100m|bundled|DIR] [--scenarios a,b]
 *     [--soak-requests N] [--soak-max-sec S] [--soak-concurrency C] [--out docs/reliability-report.md]
 *     [--render-only REPORT.json[,RERUN.json...]]
 *
 * Full run (default): the synthetic 100M shape (`mop synth --preset 100m`, cached under
 * bench-out/synth-100m) with int8 weights, one serving thread, --max-batch 4, --max-queue 8,
 * context 512; soak 10,000 requests of each kind (each kind capped at --soak-max-sec, default 60 s: give
 * more for the whole 10,000 on a slow machine). `--quick`: the bundled stories260K, shorter
 * phases and waits, soak 500 of each kind; a few minutes. `--model` picks the scenarios' model
 * either way (the soak always runs on the bundled one). `--scenarios` runs only those (ids above,
 * `soak` included). Writes the Markdown report and a .json beside it (default
 * docs/reliability-report.md), after every scenario, so an interrupted run leaves what it measured.
 * `--render-only A.json,B.json` rewrites the report from JSON: B's scenarios replace A's of the same
 * id (a rerun of a few scenarios joined to a full run; the command line says so).
 * Every request, wait and server is bounded in time; nothing leaves this machine.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_PROMPTS_FILE } from '../loadtest/options.ts';
import { loadPrompts } from '../loadtest/prompts.ts';
import { shellCommand } from './isolation/server-settings.ts';
import { type FaultSettings, runScenario, type ScenarioDef } from './faults/harness.ts';
import { renderFaultsReport } from './faults/markdown.ts';
import { type FaultsReport, type ScenarioResult, scenarioPassed } from './faults/report.ts';
import { allScenarios } from './faults/scenarios.ts';
import { runSoak } from './faults/soak.ts';
import { parseScriptArgs } from './lib/script-args.ts';
import { log } from './lib/log.ts';
import { intOption, listOption } from './lib/option-values.ts';
import { repoRoot } from './lib/repo-root.ts';
import { synthModelDir } from './lib/synth-model-dir.ts';

const started = performance.now();
const args = parseScriptArgs(import.meta.url, {
  quick: { type: 'boolean', default: false },
  model: { type: 'string' },
  scenarios: { type: 'string' },
  'soak-requests': { type: 'string' },
  'soak-max-sec': { type: 'string' },
  'soak-concurrency': { type: 'string', default: '4' },
  out: { type: 'string', default: 'docs/reliability-report.md' },
  'render-only': { type: 'string' },
});

const outMd = path.resolve(repoRoot, args.out);
const outJson = outMd.replace(/\.md$/, '') + '.json';
if (args['render-only']) {
  // A.json[,B.json...]: B's scenarios (and soak) replace A's of the same id, so a rerun of a few scenarios joins a full run.
  const files = args['render-only'].split(',');
  const reports = files.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')) as FaultsReport);
  const report = reports[0]!;
  for (const later of reports.slice(1)) {
    for (const sc of later.scenarios) {
      const i = report.scenarios.findIndex((x) => x.id === sc.id);
      if (i >= 0) report.scenarios[i] = sc;
      else report.scenarios.push(sc);
    }
    if (later.soak) report.soak = later.soak;
    report.command += ` ; then ${later.command} (${later.date}, code ${later.code}, load average ${later.machine.loadAvgStart[0]!.toFixed(2)} to ${later.machine.loadAvgEnd[0]!.toFixed(2)}) ; joined by npm run bench:faults -- --render-only ${files.map((f) => path.relative(repoRoot, path.resolve(f))).join(',')}`;
  }
  fs.writeFileSync(outJson, JSON.stringify(report, null, 2) + '\n');
  fs.writeFileSync(outMd, renderFaultsReport(report));
  process.stderr.write(`rendered ${path.relative(repoRoot, outMd)} (and .json) from ${files.join(', ')}\n`);
  process.exit(0);
}

const quick = args.quick;
const known = [...allScenarios.map((d) => d.id), 'soak'];
const picked = args.scenarios !== undefined ? listOption(args.scenarios) : known;
for (const id of picked) if (!known.includes(id)) throw new Error(`--scenarios: unknown scenario '${id}'; one of ${known.join(', ')}`);

const outDir = path.join(repoRoot, 'bench-out', 'faults');
fs.mkdirSync(outDir, { recursive: true });

/** `-m DIR --dtype int8` for the 100M shape (written once by `mop synth`), nothing for the bundled model. */
function modelChoice(name: string): { args: string[]; id: string; label: string } {
  if (name === 'bundled') return { args: [], id: 'stories260K', label: 'bundled stories260K (float32)' };
  let dir = path.resolve(name);
  if (name === '100m' || name === '1b') {
    dir = synthModelDir(name, log);
    return { args: ['-m', dir, '--dtype', 'int8'], id: path.basename(dir), label: `synthetic ${name} shape (\`mop synth --preset ${name}\`), int8 weights` };
  }
  return { args: ['-m', dir, '--dtype', 'int8'], id: path.basename(dir).replace(/\.[^.]+$/, ''), label: `${path.relative(repoRoot, dir)}, int8 weights` };
}

const model = modelChoice(args.model ?? (quick ? 'bundled' : '100m'));
const bundled = model.args.length === 0;
const settings: FaultSettings = {
  modelArgs: model.args,
  modelId: model.id,
  quick,
  maxBatch: 4,
  maxQueue: 8,
  context: 512,
  concurrency: 4,
  maxTokens: bundled ? 64 : 32,
  longTokens: 200,
  warmMs: quick ? 2000 : 3000,
  observeMs: quick ? 4000 : 8000,
  recoverWaitMs: quick ? 20_000 : 40_000,
  statusWaitMs: quick ? 8000 : 15_000,
  endWaitMs: quick ? 12_000 : 30_000,
  startWaitMs: 180_000,
  engineStallMs: 2000,
  stallMs: quick ? 30_000 : 60_000,
  graceMs: 5000,
  pruneWaitMs: quick ? 60_000 : 180_000,
  adminToken: randomBytes(16).toString('hex'),
  prompts: await loadPrompts(DEFAULT_PROMPTS_FILE),
  outDir,
  storeDir: path.join(outDir, `store-${process.pid}`),
  log,
};

const argv = process.argv.slice(2);
const report: FaultsReport = {
  date: new Date().toISOString(),
  command: `npm run bench:faults${argv.length ? ' -- ' + shellCommand(argv) : ''}`,
  model: `${model.label}; --threads 1 --prune-threads 1 --max-batch ${settings.maxBatch} --max-queue ${settings.maxQueue} --context ${settings.context}`,
  load: `closed loop of ${settings.concurrency} streaming /v1/completions at a time, ${settings.maxTokens} tokens each (temperature 0, ignore_eos); waits: ${settings.statusWaitMs / 1000} s for a status, ${settings.endWaitMs / 1000} s for the end; ${settings.warmMs / 1000} s of load before each fault, ${settings.observeMs / 1000} s watched after it`,
  machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), memGiB: os.totalmem() / 2 ** 30, loadAvgStart: os.loadavg(), loadAvgEnd: os.loadavg(), node: process.version },
  code: gitDescribe(),
  scenarios: [],
  soak: null,
  seconds: 0,
};

function gitDescribe(): string {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { cwd: repoRoot, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function write(): void {
  report.machine.loadAvgEnd = os.loadavg();
  report.seconds = (performance.now() - started) / 1000;
  fs.mkdirSync(path.dirname(outMd), { recursive: true });
  fs.writeFileSync(outJson, JSON.stringify(report, null, 2) + '\n');
  fs.writeFileSync(outMd, renderFaultsReport(report));
}

log(`bench:faults on ${model.label}; ${picked.length} scenario(s); load average ${os.loadavg()[0]!.toFixed(2)} on ${os.availableParallelism()} cores`);
for (const def of allScenarios as readonly ScenarioDef[]) {
  if (!picked.includes(def.id)) continue;
  const result: ScenarioResult = await runScenario(def, settings);
  report.scenarios.push(result);
  write();
}
if (picked.includes('soak')) {
  const requests = args['soak-requests'] !== undefined ? intOption('soak-requests', args['soak-requests']) : quick ? 500 : 10_000;
  const maxSec = args['soak-max-sec'] !== undefined ? intOption('soak-max-sec', args['soak-max-sec']) : quick ? 20 : 60;
  report.soak = await runSoak({ settings, requests, maxSec, concurrency: intOption('soak-concurrency', args['soak-concurrency']) });
  write();
}
write();
fs.rmSync(settings.storeDir, { recursive: true, force: true });
const failed = report.scenarios.filter((s) => !scenarioPassed(s)).map((s) => s.id);
log(`wrote ${path.relative(repoRoot, outMd)} (and .json) in ${report.seconds.toFixed(0)} s; ${failed.length === 0 ? 'every scenario passed' : `failing: ${failed.join(', ')}`}`);
