/**
 * Which int8 matrix kernel of ONNX Runtime's CPU provider reads weights fastest at batch 1 (one
 * decode step's projections): the same chain of projections — each layer's MLP gate (hidden →
 * ffn) then down (ffn → hidden) of a synthetic model, every matrix its own weights — built as
 *   - MatMulNBits, 8-bit blocks of 32 (what `--dtype int8` runs: ggml Q8_0's arithmetic),
 *   - MatMulNBits, 8-bit blocks of 128 (MatMulNBitsSettings.blockSize 128: fewer scales, no longer Q8_0),
 *   - DynamicQuantizeMatMul (int8 weights with one scale per output column, activations quantized
 *     per run: ONNX Runtime's other int8 path),
 *   - float32 MatMul,
 * one session per kernel, runs interleaved (A B C D A B …), median wall time per run and the
 * weight bytes read per second. Distinct weights matter: a chain that repeats one matrix runs from
 * the cache and reads several times faster than a real model can.
 *
 *   node --import tsx scripts/experiments/bench-int8-kernels.ts [--model 100m] [--layers 12] [--threads 1,2] [--runs 40]
 */
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import { loadBenchModel } from '../lib/bench-model.ts';
import { createOrtSession } from '../../src/runtime/device/ort-session.ts';
import { quantizeMatrix } from '../../src/runtime/model/block-quantization.ts';
import { weightName } from '../../src/runtime/model/spec.ts';
import { transpose } from '../../src/runtime/onnx/weight-packing.ts';
import { matMulNBits } from '../../src/runtime/onnx/matmul-nbits.ts';
import { DataType, type OnnxModel, OnnxGraphBuilder } from '../../src/runtime/onnx/onnx-model.ts';
import { median } from '../lib/stats.ts';
import { parseScriptArgs } from '../lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, {
  model: { type: 'string', default: '100m' },
  layers: { type: 'string' },
  threads: { type: 'string', default: os.availableParallelism() > 1 ? `1,${os.availableParallelism()}` : '1' },
  runs: { type: 'string', default: '40' },
});

/** ONNX TensorProto element type int8 (onnx-model.ts names only the types the graphs use). */
const INT8 = 3;
const model = await loadBenchModel(args.model);
const { spec, weights } = model;
const mlpLayers = spec.layers.map((l, i) => ({ l, i })).filter(({ l }) => l.ffn > 0);
const layers = mlpLayers.slice(0, args.layers !== undefined ? Number(args.layers) : mlpLayers.length);
if (layers.length === 0) throw new Error(`${args.model} has no MLP to run`);
const H = spec.hidden;
/** Each layer's [gate (ffn × H), down (H × ffn)] as [n, k] row-major float weights. */
const chain = layers.flatMap(({ l, i }) => [
  { w: weights.get(weightName.gate(i))!.data, n: l.ffn, k: H, name: `l${i}.gate` },
  { w: weights.get(weightName.down(i))!.data, n: H, k: l.ffn, name: `l${i}.down` },
]);
const params = chain.reduce((s, m) => s + m.n * m.k, 0);

type Kernel = { name: string; bytesPerParam: number; build: (g: OnnxGraphBuilder, x: string, m: (typeof chain)[number]) => string };
const kernels: Kernel[] = [
  { name: 'MatMulNBits int8, blocks of 32 (Q8_0)', bytesPerParam: 1 + 2 / 32, build: (g, x, m) => matMulNBits(g, x, m.name, quantizeMatrix(m.w, m.n, m.k, 8, 32), undefined, 4) },
  { name: 'MatMulNBits int8, blocks of 128', bytesPerParam: 1 + 2 / 128, build: (g, x, m) => matMulNBits(g, x, m.name, quantizeMatrix(m.w, m.n, m.k, 8, 128), undefined, 4) },
  { name: 'DynamicQuantizeMatMul, int8 per column', bytesPerParam: 1, build: (g, x, m) => dynamicQuantizeMatMul(g, x, m) },
  { name: 'float32 MatMul', bytesPerParam: 4, build: (g, x, m) => g.op('MatMul', [x, g.floatInitializer(m.name, [m.k, m.n], transpose({ shape: [m.n, m.k], data: m.w }))]) },
];

/** Symmetric int8 weights, one scale per output column: B [k, n], scales [n]. */
function dynamicQuantizeMatMul(g: OnnxGraphBuilder, x: string, m: (typeof chain)[number]): string {
  const codes = new Int8Array(m.k * m.n);
  const scales = new Float32Array(m.n);
  for (let r = 0; r < m.n; r++) {
    let max = 0;
    for (let c = 0; c < m.k; c++) max = Math.max(max, Math.abs(m.w[r * m.k + c]!));
    const s = max / 127 || 1;
    scales[r] = s;
    for (let c = 0; c < m.k; c++) codes[c * m.n + r] = Math.round(m.w[r * m.k + c]! / s);
  }
  const b = g.initializer(`${m.name}.q`, { dims: [m.k, m.n], dataType: INT8 as never, raw: new Uint8Array(codes.buffer) });
  return g.node('DynamicQuantizeMatMul', [x, b, g.floatInitializer(`${m.name}.scales`, [m.n], scales)], 1, {}, 'com.microsoft')[0]!;
}

function graph(kernel: Kernel): OnnxModel {
  const g = new OnnxGraphBuilder('projections');
  let x = g.input('x', DataType.float, [1, H]);
  for (const m of chain) x = kernel.build(g, x, m);
  g.output(x, DataType.float, [1, H]);
  return g.toModel({ '': 21, 'com.microsoft': 1 });
}

const runs = Number(args.runs);
const input = { x: new ort.Tensor('float32', Float32Array.from({ length: H }, (_, i) => Math.sin(i) * 0.5), [1, H]) };
console.log(`${args.model}: ${layers.length} layers × (gate ${H}→ffn, down ffn→${H}), ${(params / 1e6).toFixed(1)}M parameters, batch 1, ${runs} runs per kernel interleaved (idle pool threads sleep: four spinning pools would fight over the cores); load average ${os.loadavg()[0]!.toFixed(2)}`);
for (const threads of args.threads.split(',').map(Number)) {
  const sessions = [];
  for (const k of kernels) sessions.push(await createOrtSession(graph(k), 'cpu', { threads }));
  const times = kernels.map(() => [] as number[]);
  for (let r = 0; r < runs + 5; r++) {
    for (const [j, s] of sessions.entries()) {
      const t0 = performance.now();
      await s.run(input);
      if (r >= 5) times[j]!.push(performance.now() - t0);
    }
  }
  kernels.forEach((k, j) => {
    const t = median(times[j]!);
    console.log(`  ${threads} thread(s): ${k.name}: ${t.toFixed(2)} ms a run, ${((params * k.bytesPerParam) / t / 1e6).toFixed(1)} GB/s of weights`);
  });
  for (const s of sessions) await s.release();
}
