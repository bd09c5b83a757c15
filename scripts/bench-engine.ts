/**
 * Engine throughput: prefill and decode tokens/s at batch 1 and 8, for the bundled model and a
 * ~100M-parameter synthetic model of LLaMA proportions (random weights: speed does not depend on
 * their values). Token ids are fixed, not sampled, so this measures the engine alone.
 *
 *   npm run bench:engine -- [--models bundled,100m] [--prompt 128] [--decode 64] [--threads N]
 *     [--dtype float32|int8|int4] [--ort-spin on|off] [--out bench-out/engine.json]
 *
 * --dtype int8|int4 runs every projection and the LM head as MatMulNBits (CPU) at the serving
 * accuracy_level; scripts/bench-quantization.ts compares the levels (float32 against int8 activations).
 * --ort-spin on lets idle ONNX Runtime pool threads spin (the server's --ort-spin); default off.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadBenchModel } from './lib/bench-model.ts';
import { parseDtypeRequest } from '../src/runtime/device/device.ts';
import { ModelSession } from '../src/runtime/engine/ort-decoder-session.ts';
import { DEFAULT_ACCURACY_LEVEL } from '../src/runtime/onnx/matmul-nbits.ts';
import { parameterCounts } from '../src/runtime/model/spec.ts';
import { parseScriptArgs } from './lib/script-args.ts';
import { onOffOption } from './lib/option-values.ts';

const args = parseScriptArgs(import.meta.url, {
  models: { type: 'string', default: 'bundled,100m' },
  prompt: { type: 'string', default: '128' },
  decode: { type: 'string', default: '64' },
  batches: { type: 'string', default: '1,8' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  dtype: { type: 'string', default: 'float32' },
  'ort-spin': { type: 'string', default: 'off' },
  out: { type: 'string', default: 'bench-out/engine.json' },
});
const dtype = parseDtypeRequest(args.dtype);
if (dtype !== 'float32' && dtype !== 'int8' && dtype !== 'int4') throw new Error(`--dtype: the engine benchmark runs on the CPU: float32, int8 or int4, not ${args.dtype}`);
const spin = onOffOption('ort-spin', args['ort-spin']);
const target = dtype === 'float32' ? { device: 'cpu' as const, dtype } : { device: 'cpu' as const, dtype: 'float32' as const, weights: dtype };
const promptLen = Number(args.prompt);
const decodeSteps = Number(args.decode);
const batches = args.batches.split(',').map(Number);
const threads = Number(args.threads);

interface Row {
  model: string;
  dtype: string;
  params: number;
  batch: number;
  promptTokens: number;
  prefillTokensPerSec: number;
  decodeSteps: number;
  decodeTokensPerSec: number;
  msPerDecodeStep: number;
}

const rows: Row[] = [];
for (const name of args.models.split(',')) {
  const { spec, weights } = await loadBenchModel(name);
  const maxBatch = Math.max(...batches);
  const t0 = performance.now();
  const session = await ModelSession.create(spec, weights, { maxBatch, maxContext: Math.min(spec.maxContext, promptLen + decodeSteps + 8), threads, target, spin });
  process.stderr.write(`${name}: ${(parameterCounts(spec).total / 1e6).toFixed(1)}M params, ${dtype}${dtype === 'float32' ? '' : ` (accuracy_level ${DEFAULT_ACCURACY_LEVEL})`}, session built in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${threads} threads\n`);
  const prompt = Array.from({ length: promptLen }, (_, i) => 1 + ((i * 31) % (spec.vocabSize - 1)));
  // Warm-up: first runs allocate arenas and pick kernels.
  await session.prefill(0, prompt.slice(0, 16));
  await session.decode([{ slot: 0, token: 5 }]);
  for (const batch of batches) {
    const slots = Array.from({ length: batch }, (_, i) => i);
    slots.forEach((s) => session.reset(s));
    let t = performance.now();
    for (const s of slots) await session.prefill(s, prompt);
    const prefillSec = (performance.now() - t) / 1000;
    t = performance.now();
    for (let step = 0; step < decodeSteps; step++) await session.decode(slots.map((slot) => ({ slot, token: 1 + ((step * 7 + slot) % (spec.vocabSize - 1)) })));
    const decodeSec = (performance.now() - t) / 1000;
    const row: Row = {
      model: name,
      dtype: dtype === 'float32' ? dtype : `${dtype} (accuracy_level ${DEFAULT_ACCURACY_LEVEL})`,
      params: parameterCounts(spec).total,
      batch,
      promptTokens: promptLen,
      prefillTokensPerSec: (batch * promptLen) / prefillSec,
      decodeSteps,
      decodeTokensPerSec: (batch * decodeSteps) / decodeSec,
      msPerDecodeStep: (decodeSec * 1000) / decodeSteps,
    };
    rows.push(row);
    process.stderr.write(`  batch ${batch}: prefill ${row.prefillTokensPerSec.toFixed(0)} tok/s, decode ${row.decodeTokensPerSec.toFixed(1)} tok/s (${row.msPerDecodeStep.toFixed(2)} ms/step)\n`);
  }
  await session.release();
}

const report = { date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), threads, spin, node: process.version, loadAvg: os.loadavg(), rows };
fs.mkdirSync(path.dirname(args.out), { recursive: true });
fs.writeFileSync(args.out, JSON.stringify(report, null, 2));
console.log('| model | dtype | params | batch | prompt | prefill tok/s | decode tok/s | ms/decode step |');
console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(`| ${r.model} | ${r.dtype} | ${(r.params / 1e6).toFixed(2)}M | ${r.batch} | ${r.promptTokens} | ${r.prefillTokensPerSec.toFixed(0)} | ${r.decodeTokensPerSec.toFixed(1)} | ${r.msPerDecodeStep.toFixed(2)} |`);
}
console.log(`\nwritten ${args.out}`);
