/**
 * Recovery training speed: training tokens/s (positions trained per second of wall time, forward +
 * backward + AdamW), the FLOP rate that is, ONNX Runtime's own MatMul rate on the model's
 * projection shapes measured in the same process right after, and peak RSS, for full fine-tuning
 * and LoRA, with cross-entropy, at batch 4 × 128, on the bundled stories260K (real text) and on the
 * synthetic ~100M shape (random weights and tokens: only speed and memory mean anything there).
 * Each configuration runs in its own process so its peak RSS is its own. Not a test.
 *
 * With `--baseline REV` the same configurations also run on the training code of git revision REV
 * (its src/ extracted to a temporary folder; the measuring code is this script's), alternating
 * baseline and current in ABBA order `--reps` times, so both see the same load; the table gives
 * each pair's speed-up and their median. On a shared machine only these ratios mean anything.
 *
 *   node --import tsx scripts/experiments/bench-recovery-speed.ts [--models bundled,100m] [--kinds full,lora]
 *     [--steps-bundled 20] [--steps-100m 5] [--threads N] [--baseline REV] [--reps 2]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as ort from 'onnxruntime-node';
import { createOrtSession } from '../../src/runtime/device/ort-session.ts';
import { defaultModelPath, loadModel, packageRoot } from '../../src/runtime/model/load.ts';
import { type ModelSpec, parameterCounts } from '../../src/runtime/model/spec.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { DataType, OnnxGraphBuilder } from '../../src/runtime/onnx/onnx-model.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import type { RecoveryKind, recover as recoverFn } from '../../src/runtime/train/recover.ts';
import { loadBenchModel } from '../lib/bench-model.ts';
import { parseScriptArgs } from '../lib/script-args.ts';
import { median } from '../lib/stats.ts';

const args = parseScriptArgs(import.meta.url, {
  models: { type: 'string', default: 'bundled,100m' },
  kinds: { type: 'string', default: 'full,lora' },
  'steps-bundled': { type: 'string', default: '20' },
  'steps-100m': { type: 'string', default: '5' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  baseline: { type: 'string' },
  reps: { type: 'string', default: '2' },
  one: { type: 'string' },
  root: { type: 'string' },
});
const BATCH = 4;
const SEQ = 128;

interface Measurement {
  model: string;
  kind: RecoveryKind;
  parameters: number;
  trainable: number;
  steps: number;
  /** Steady state: steps after the first two (ORT's first runs allocate). */
  tokensPerSecond: number;
  secondsPerStep: number;
  /** Model FLOPs of a step (trainingFlops) per second of it. */
  gflops: number;
  /** ONNX Runtime MatMul alone on the projection shapes of one run's rows, same threads. */
  matmulGflops: number;
  buildSeconds: number;
  peakRssMiB: number;
}

/** The projections of one layer and the head as [in, out] (what a token's MatMuls are). */
function projections(spec: ModelSpec): [number, number][] {
  const out: [number, number][] = [];
  for (const l of spec.layers) {
    if (l.heads > 0) out.push([spec.hidden, l.heads * l.headDim], [spec.hidden, l.kvHeads * l.headDim], [spec.hidden, l.kvHeads * l.headDim], [l.heads * l.headDim, spec.hidden]);
    if (l.ffn > 0) out.push([spec.hidden, l.ffn], [spec.hidden, l.ffn], [l.ffn, spec.hidden]);
  }
  out.push([spec.hidden, spec.vocabSize]);
  return out;
}

/**
 * FLOPs of one training step: 2 per MatMul weight per token forward, as much again for the input
 * gradients, and (full only) as much for the weight gradients; attention's two T×T products per
 * head the same way (their gradients are always computed). LoRA's adapters are left out.
 */
function trainingFlops(spec: ModelSpec, kind: RecoveryKind, tokens: number, T: number): number {
  const weights = projections(spec).reduce((s, [i, o]) => s + i * o, 0);
  const attention = spec.layers.reduce((s, l) => s + 2 * 2 * T * l.heads * l.headDim, 0);
  return tokens * (2 * weights * (kind === 'full' ? 3 : 2) + 3 * attention);
}

/** GFLOP/s of ORT's MatMul on each projection shape with `rows` × T tokens, best of a few runs. */
async function matmulRate(spec: ModelSpec, tokens: number, threads: number): Promise<number> {
  const g = new OnnxGraphBuilder('matmuls');
  const shapes = [...new Map(projections(spec).map((s) => [s.join('x'), s])).values()];
  const ins = new Map<number, string>();
  shapes.forEach(([i, o], k) => {
    if (!ins.has(i)) ins.set(i, g.input(`x${i}`, DataType.float, [tokens, i]));
    const w = g.floatInitializer(`w${k}`, [i, o], Float32Array.from({ length: i * o }, (_, j) => ((j % 13) - 6) / 64));
    g.node('MatMul', [ins.get(i)!, w], [`y${k}`]);
    g.output(`y${k}`, DataType.float, [tokens, o]);
  });
  const session = await createOrtSession(g.toModel({ '': 21 }), 'cpu', { threads });
  const feeds = Object.fromEntries([...ins].map(([i, name]) => [name, new ort.Tensor('float32', new Float32Array(tokens * i).fill(0.5), [tokens, i])]));
  // Each distinct shape once per run.
  const once = shapes.reduce((s, [i, o]) => s + 2 * tokens * i * o, 0);
  let best = Infinity;
  for (let r = 0; r < 4; r++) {
    const t0 = performance.now();
    await session.run(feeds);
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  await session.release();
  return once / best / 1e9;
}

async function measureOne(model: string, kind: RecoveryKind, root: string): Promise<Measurement> {
  const { recover } = (await import(pathToFileURL(join(root, 'src/runtime/train/recover.ts')).href)) as { recover: typeof recoverFn };
  const threads = Number(args.threads);
  let spec: ModelSpec, weights: Weights, windows: Int32Array[];
  if (model === 'bundled') {
    const m = await loadModel(defaultModelPath());
    ({ spec, weights } = m);
    const tok = createTokenizer(m.tokenizer);
    const stream = tok.encode(readFileSync(resolve(packageRoot(), 'data/tinystories-recovery-start.txt'), 'utf8'), { addBos: false });
    windows = [];
    for (let off = 0; off + SEQ <= stream.length && windows.length < 256; off += SEQ) windows.push(Int32Array.from([spec.bosTokenId, ...stream.slice(off, off + SEQ)]));
  } else {
    ({ spec, weights } = await loadBenchModel('100m'));
    let s = 12345;
    windows = Array.from({ length: 16 }, () => Int32Array.from({ length: SEQ + 1 }, () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) % spec.vocabSize));
  }
  const steps = Number(model === 'bundled' ? args['steps-bundled'] : args['steps-100m']);
  const marks: { step: number; elapsed: number }[] = [];
  const started = performance.now();
  const r = await recover(
    { spec, weights },
    { kind, loss: 'ce', steps, batch: BATCH, seqLen: SEQ, lr: 1e-4, warmup: 0, threads, loraRank: 8, loraAlpha: 16 },
    { windows },
    { onProgress: (p) => marks.push({ step: p.step, elapsed: p.elapsedSeconds }) },
  );
  const total = (performance.now() - started) / 1000;
  // ONNX Runtime's first two runs of a session allocate (the second still grows its arena): with one
  // run a step, the first two steps are not steady, so they are left out (with fewer steps, only the first).
  const first = marks[Math.min(2, marks.length - 2)]!;
  const last = marks.at(-1)!;
  const steady = (last.elapsed - first.elapsed) / (last.step - first.step);
  return {
    model: model === 'bundled' ? 'stories260K' : 'synthetic 100m',
    kind,
    parameters: parameterCounts(spec).total,
    trainable: r.report.trainableParameters,
    steps,
    tokensPerSecond: (BATCH * SEQ) / steady,
    secondsPerStep: steady,
    gflops: trainingFlops(spec, kind, BATCH * SEQ, SEQ) / steady / 1e9,
    matmulGflops: await matmulRate(spec, SEQ, threads),
    buildSeconds: total - r.report.seconds,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

function child(model: string, kind: string, root: string): Measurement {
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', process.argv[1]!, '--one', `${model}:${kind}`, '--root', root, '--threads', args.threads, '--steps-bundled', args['steps-bundled'], '--steps-100m', args['steps-100m']],
    { encoding: 'utf8', maxBuffer: 1 << 24 },
  );
  return JSON.parse(out.trim().split('\n').at(-1)!) as Measurement;
}

/** REV's src/ in a temporary folder beside a link to this checkout's node_modules. */
function extractRevision(rev: string): string {
  const dir = mkdtempSync(join(os.tmpdir(), 'recovery-speed-baseline-'));
  execFileSync('bash', ['-c', `git -C "$1" archive "$2" src package.json tsconfig.json | tar -x -C "$3"`, '_', packageRoot(), rev, dir]);
  symlinkSync(join(packageRoot(), 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

const row = (m: Measurement) =>
  `| ${m.model} | ${m.kind} | ${(m.parameters / 1e6).toFixed(2)}M | ${(m.trainable / 1e6).toFixed(3)}M | ${m.secondsPerStep.toFixed(3)} | ${m.tokensPerSecond.toFixed(0)} | ${m.gflops.toFixed(1)} | ${m.matmulGflops.toFixed(1)} | ${m.buildSeconds.toFixed(1)} | ${m.peakRssMiB.toFixed(0)} |`;

if (args.one) {
  const [model, kind] = args.one.split(':') as [string, RecoveryKind];
  console.log(JSON.stringify(await measureOne(model, kind, args.root ?? packageRoot())));
} else {
  const configs = args.models.split(',').flatMap((model) => (args.kinds.split(',') as RecoveryKind[]).map((kind) => ({ model, kind })));
  console.log(`recovery training speed, batch ${BATCH}×${SEQ}, cross-entropy, ${args.threads} thread(s), ${os.cpus()[0]?.model ?? 'cpu'}, load average ${os.loadavg()[0]!.toFixed(1)} at the start`);
  const header = ['| model | kind | params | trainable | s/step | train tokens/s | step GFLOP/s | ORT MatMul GFLOP/s | graph+session build s | peak RSS MiB |', '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'];
  if (!args.baseline) {
    console.log(header.join('\n'));
    for (const c of configs) console.log(row(child(c.model, c.kind, packageRoot())));
  } else {
    const base = extractRevision(args.baseline);
    try {
      for (const c of configs) {
        const ratios: number[] = [];
        for (let rep = 0; rep < Number(args.reps); rep++) {
          // ABBA: each side goes first as often as the other.
          const order = rep % 2 === 0 ? ['baseline', 'current'] : ['current', 'baseline'];
          const got = Object.fromEntries(order.map((side) => [side, child(c.model, c.kind, side === 'baseline' ? base : packageRoot())])) as Record<string, Measurement>;
          ratios.push(got.current!.tokensPerSecond / got.baseline!.tokensPerSecond);
          console.log(`${c.model} ${c.kind} rep ${rep + 1}: baseline ${got.baseline!.tokensPerSecond.toFixed(1)} tokens/s (${got.baseline!.gflops.toFixed(1)} GFLOP/s, MatMul ${got.baseline!.matmulGflops.toFixed(1)}), current ${got.current!.tokensPerSecond.toFixed(1)} (${got.current!.gflops.toFixed(1)}, MatMul ${got.current!.matmulGflops.toFixed(1)}): ×${ratios.at(-1)!.toFixed(2)}; load ${os.loadavg()[0]!.toFixed(1)}`);
        }
        console.log(`${c.model} ${c.kind}: speed-up ×${median(ratios).toFixed(2)} (median of ${ratios.map((r) => r.toFixed(2)).join(', ')}) vs ${args.baseline}`);
      }
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }
}
