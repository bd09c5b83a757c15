/**
 * Where a recovery training run's time goes, op by op: ONNX Runtime's own profiler on the training
 * graph (forward + loss + backward) of a model, full or LoRA, cross-entropy, `--rows` × 128 tokens
 * of random ids. Runs the graph `--runs` times and reports the last run: its wall time (session.run
 * as the caller sees it: the gradients' return included), ONNX Runtime's own time for it, and the
 * kernel time per op type and of the slowest nodes, with the step's GFLOP/s. Not a test.
 *
 *   node --import tsx scripts/experiments/profile-training-step.ts [--model 100m] [--kind full|lora] [--rows 4]
 *     [--runs 3] [--threads 2] [--out bench-out/train-profile]
 */
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { createOrtSession } from '../../src/runtime/device/ort-session.ts';
import { initLoraAdapters, loraTargets } from '../../src/runtime/train/lora.ts';
import { buildTrainingGraph, trainingGraphIo } from '../../src/runtime/train/training-graph.ts';
import { loadBenchModel } from '../lib/bench-model.ts';
import { parseScriptArgs } from '../lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, {
  model: { type: 'string', default: '100m' },
  kind: { type: 'string', default: 'full' },
  rows: { type: 'string', default: '4' },
  runs: { type: 'string', default: '3' },
  threads: { type: 'string', default: '2' },
  out: { type: 'string', default: 'bench-out/train-profile' },
});
const T = 128;
const rows = Number(args.rows);
const { spec, weights } = await loadBenchModel(args.model);
const lora = args.kind === 'lora' ? { rank: 8, alpha: 16, targets: loraTargets } : undefined;
const graph = buildTrainingGraph(spec, weights, { seqLen: T, loss: 'ce', precision: 'float32', ...(lora && { lora }) });
fs.mkdirSync(args.out, { recursive: true });
const prefix = path.join(args.out, `${args.model}-${args.kind}`);
const session = await createOrtSession(graph.model, 'cpu', { threads: Number(args.threads), profilePrefix: prefix });
const ids = BigInt64Array.from({ length: rows * T }, (_, i) => BigInt((i * 7919) % spec.vocabSize));
const feeds: Record<string, ort.Tensor> = {
  [trainingGraphIo.inputIds]: new ort.Tensor('int64', ids, [rows, T]),
  [trainingGraphIo.targets]: new ort.Tensor('int64', ids, [rows, T]),
  [trainingGraphIo.lossWeights]: new ort.Tensor('float32', new Float32Array(rows * T).fill(1), [rows, T]),
};
const adapters = lora ? initLoraAdapters(spec, lora, 0) : undefined;
for (const t of graph.trainable) feeds[t.name] = new ort.Tensor('float32', adapters ? adapters.get(t.name)!.data : Float32Array.from(weights.get(t.name)!.data), t.shape);
const fetches = [trainingGraphIo.loss, ...graph.trainable.map((t) => t.grad)];
let wall = 0;
for (let r = 0; r < Number(args.runs); r++) {
  const t0 = performance.now();
  await session.run(feeds, fetches);
  wall = (performance.now() - t0) / 1000;
}
session.endProfiling();
await session.release();

interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args: { op_name?: string };
}
const file = fs.readdirSync(args.out).filter((f) => f.startsWith(path.basename(prefix)) && f.endsWith('.json')).sort().at(-1)!;
const events = JSON.parse(fs.readFileSync(path.join(args.out, file), 'utf8')) as ProfileEvent[];
const last = events.filter((e) => e.name === 'model_run').at(-1)!;
const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= last.ts);
const total = kernels.reduce((s, e) => s + e.dur, 0);
const byType = new Map<string, number>();
for (const e of kernels) byType.set(e.args.op_name ?? '?', (byType.get(e.args.op_name ?? '?') ?? 0) + e.dur);
const weightsPerToken = args.kind === 'full' ? 3 : 2;
const matmulParams = spec.layers.reduce((s, l) => s + (l.heads > 0 ? 2 * spec.hidden * l.heads * l.headDim + 2 * spec.hidden * l.kvHeads * l.headDim : 0) + 3 * spec.hidden * l.ffn, 0) + spec.hidden * spec.vocabSize;
const flops = 2 * weightsPerToken * matmulParams * rows * T;
console.log(`${args.model} ${args.kind}, ${rows} × ${T} tokens, ${args.threads} threads: run ${wall.toFixed(2)} s wall, ${(last.dur / 1e6).toFixed(2)} s in ONNX Runtime, kernels ${(total / 1e6).toFixed(2)} s; ${(flops / 1e9).toFixed(0)} GFLOP of MatMul work → ${(flops / wall / 1e9).toFixed(1)} GFLOP/s of wall, ${(flops / (last.dur / 1e6) / 1e9).toFixed(1)} in ORT`);
for (const [op, us] of [...byType].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${op.padEnd(16)} ${(us / 1e3).toFixed(0).padStart(7)} ms  ${((100 * us) / total).toFixed(1)}%`);
