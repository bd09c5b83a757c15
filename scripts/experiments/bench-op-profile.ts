/**
 * Where a decode step's time goes, op by op: ONNX Runtime's own profiler on the serving graph
 * (ModelSession, no server), for a dense model and any pruned one beside it. Each model is
 * prefilled, decoded for warm-up steps, then `--steps` decode steps are timed; the report gives,
 * per step, the mean time of every op type (the LM head apart from the other projections), the
 * time ONNX Runtime spends in the run in all, and the wall time of the step (the rest is the
 * Node binding and our code: feeds, cache bookkeeping, the output copies). The profiler itself
 * adds a little to every node, so the step is slower here than in bench:engine; compare shares.
 *
 *   node --import tsx scripts/experiments/bench-op-profile.ts --models bundled,/tmp/pruned [--dtype int8]
 *     [--threads 1] [--batch 1] [--prompt 128] [--steps 32] [--warmup 8] [--out bench-out/op-profile.json]
 *
 * A model is `bundled`, a synthetic preset name (`100m`, `500m`, …: random weights, built here) or
 * a checkpoint path (`mop synth` / `mop prune` output directories, GGUF, llama2.c).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isBenchModelName, loadBenchModel } from '../lib/bench-model.ts';
import { parseDtypeRequest, targetFor } from '../../src/runtime/device/device.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { loadModel } from '../../src/runtime/model/load.ts';
import { parameterCounts, type ModelSpec } from '../../src/runtime/model/spec.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { parseScriptArgs } from '../lib/script-args.ts';
import { log } from '../lib/log.ts';

const args = parseScriptArgs(import.meta.url, {
  models: { type: 'string', default: 'bundled' },
  dtype: { type: 'string', default: 'float32' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  batch: { type: 'string', default: '1' },
  prompt: { type: 'string', default: '128' },
  steps: { type: 'string', default: '32' },
  warmup: { type: 'string', default: '8' },
  out: { type: 'string', default: 'bench-out/op-profile.json' },
});
const dtype = parseDtypeRequest(args.dtype);
if (dtype !== 'float32' && dtype !== 'int8' && dtype !== 'int4') throw new Error(`--dtype: float32, int8 or int4 (CPU), not '${args.dtype}'`);
const target = targetFor('cpu', dtype);
const threads = Number(args.threads);
const batch = Number(args.batch);
const promptTokens = Number(args.prompt);
const steps = Number(args.steps);
const warmup = Number(args.warmup);
for (const [name, v] of Object.entries({ threads, batch, prompt: promptTokens, steps, warmup })) if (!(Number.isInteger(v) && v >= (name === 'warmup' ? 0 : 1))) throw new Error(`--${name}: a positive integer, got ${v}`);

async function load(name: string): Promise<{ spec: ModelSpec; weights: Weights }> {
  if (isBenchModelName(name)) return loadBenchModel(name);
  return loadModel(name);
}

interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args: { op_name?: string; output_type_shape?: Record<string, number[]>[] };
}

interface ModelProfile {
  model: string;
  blockParams: number;
  /** Mean wall time of a decode step (ms), and of its ONNX Runtime run. */
  stepMs: number;
  runMs: number;
  /** Mean ms per step by op type ('LM head' apart); sorted, largest first. */
  ops: { op: string; ms: number; nodes: number }[];
}

/** The newest file ONNX Runtime wrote for `prefix` (it appends a date to the name). */
function profileFile(prefix: string): string {
  const dir = path.dirname(prefix);
  const base = path.basename(prefix);
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(base) && f.endsWith('.json'));
  if (files.length === 0) throw new Error(`ONNX Runtime wrote no profile for ${prefix}`);
  return path.join(dir, files.sort().at(-1)!);
}

async function profile(name: string): Promise<ModelProfile> {
  const model = await load(name);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'op-profile-'));
  const prefix = path.join(scratch, 'ort');
  const session = await ModelSession.create(model.spec, model.weights, {
    maxBatch: batch,
    maxContext: Math.min(model.spec.maxContext, promptTokens + warmup + steps + 2),
    threads,
    target,
    profilePrefix: prefix,
  });
  try {
    const V = model.spec.vocabSize;
    for (let s = 0; s < batch; s++) await session.prefill(s, Array.from({ length: promptTokens }, (_, k) => 3 + ((s * 7919 + k * 104729) % (V - 3))));
    const entries = (token: number) => Array.from({ length: batch }, (_, slot) => ({ slot, token }));
    for (let i = 0; i < warmup; i++) await session.decode(entries(5));
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) await session.decode(entries(5 + i));
    const stepMs = (performance.now() - t0) / steps;
    await session.endProfiling();
    const events = JSON.parse(fs.readFileSync(profileFile(prefix), 'utf8')) as ProfileEvent[];
    const runs = events.filter((e) => e.name === 'model_run');
    const timed = runs.slice(-steps);
    const from = timed[0]!.ts;
    const byOp = new Map<string, { us: number; nodes: number }>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < from || !e.args.op_name) continue;
      const shape = Object.values(e.args.output_type_shape?.[0] ?? {})[0];
      const isHead = /^MatMul/.test(e.args.op_name) && shape?.at(-1) === V;
      const key = isHead ? `LM head (${e.args.op_name})` : e.args.op_name;
      const o = byOp.get(key) ?? { us: 0, nodes: 0 };
      o.us += e.dur;
      o.nodes++;
      byOp.set(key, o);
    }
    const ops = [...byOp].map(([op, o]) => ({ op, ms: o.us / 1000 / steps, nodes: Math.round(o.nodes / steps) })).sort((a, b) => b.ms - a.ms);
    return { model: name, blockParams: parameterCounts(model.spec).blocks, stepMs, runMs: timed.reduce((t, e) => t + e.dur, 0) / 1000 / steps, ops };
  } finally {
    await session.release();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

const names = args.models.split(',').map((m) => m.trim()).filter(Boolean);
const results: ModelProfile[] = [];
for (const name of names) {
  log(`profiling ${name} (${dtype}, ${threads} thread(s), batch ${batch}, ${promptTokens}-token prompt, ${steps} steps)`);
  results.push(await profile(name));
}
const report = { date: new Date().toISOString(), command: `node --import tsx scripts/experiments/bench-op-profile.ts ${process.argv.slice(2).join(' ')}`.trim(), dtype, threads, batch, promptTokens, steps, machine: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), loadAvg: os.loadavg() }, results };
fs.mkdirSync(path.dirname(args.out), { recursive: true });
fs.writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');

// One table: a row per op type, a column per model (ms per step, and the share of its step).
const opNames = [...new Set(results.flatMap((r) => r.ops.map((o) => o.op)))].sort((a, b) => (results[0]!.ops.find((o) => o.op === b)?.ms ?? 0) - (results[0]!.ops.find((o) => o.op === a)?.ms ?? 0));
const cell = (r: ModelProfile, ms: number | undefined) => (ms === undefined ? '–' : `${ms.toFixed(3)} (${((100 * ms) / r.stepMs).toFixed(1)}%)`);
console.log(`| ms per decode step | ${results.map((r) => `${r.model} (${(r.blockParams / 1e6).toFixed(1)}M block params)`).join(' | ')} |`);
console.log(`|---|${results.map(() => '---').join('|')}|`);
for (const op of opNames) console.log(`| ${op} | ${results.map((r) => cell(r, r.ops.find((o) => o.op === op)?.ms)).join(' | ')} |`);
console.log(`| ONNX Runtime between kernels (dispatch, allocation) | ${results.map((r) => cell(r, r.runMs - r.ops.reduce((t, o) => t + o.ms, 0))).join(' | ')} |`);
console.log(`| ONNX Runtime run, in all | ${results.map((r) => cell(r, r.runMs)).join(' | ')} |`);
console.log(`| outside the run (binding, feeds, cache, copies) | ${results.map((r) => cell(r, r.stepMs - r.runMs)).join(' | ')} |`);
console.log(`| **decode step (wall)** | ${results.map((r) => `**${r.stepMs.toFixed(3)}**`).join(' | ')} |`);
log(`wrote ${args.out}`);
