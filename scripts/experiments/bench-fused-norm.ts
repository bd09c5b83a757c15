/**
 * What a graph fusion saves per decode step: the same model's serving graph built with and without
 * it, two ModelSessions timed step by step interleaved (A B A B …, so load from other processes
 * hits both alike), median of the timed steps, over several rounds: residual Adds folded into the
 * RMSNorms (SkipSimplifiedLayerNormalization, the CPU serving graph's default) against Add + norm.
 *
 *   node --import tsx scripts/experiments/bench-fused-norm.ts [--model 100m] [--dtype int8]
 *     [--threads 1] [--batch 1] [--prompt 128] [--steps 64] [--rounds 3]
 */
import os from 'node:os';
import { loadBenchModel } from '../lib/bench-model.ts';
import { parseDtypeRequest, targetFor } from '../../src/runtime/device/device.ts';
import { cacheOutputsOn, ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { buildDecoderGraph } from '../../src/runtime/onnx/decoder-graph.ts';
import { median } from '../lib/stats.ts';
import { parseScriptArgs } from '../lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, {
  model: { type: 'string', default: '100m' },
  dtype: { type: 'string', default: 'int8' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  prompt: { type: 'string', default: '128' },
  steps: { type: 'string', default: '64' },
  rounds: { type: 'string', default: '3' },
  batch: { type: 'string', default: '1' },
});
const dtype = parseDtypeRequest(args.dtype);
if (dtype !== 'float32' && dtype !== 'int8' && dtype !== 'int4') throw new Error(`--dtype: float32, int8 or int4 (CPU), not '${args.dtype}'`);
const target = targetFor('cpu', dtype);
const [threads, promptTokens, steps, rounds] = [args.threads, args.prompt, args.steps, args.rounds].map(Number) as [number, number, number, number];

const model = await loadBenchModel(args.model);
const maxContext = promptTokens + steps + 2;
const prompt = Array.from({ length: promptTokens }, (_, k) => 3 + ((k * 104729) % (model.spec.vocabSize - 3)));

const batch = Number(args.batch);
const variants = [
  { name: 'fused (default)', fuseResidualNorm: true },
  { name: 'Add + norm', fuseResidualNorm: false },
];
const sessions = await Promise.all(
  variants.map(async (v) => {
    const graph = buildDecoderGraph(model.spec, model.weights, { maxContext, logits: 'last', dtype: 'float32', ...(target.weights && { weights: target.weights }), packedTokens: true, fuseResidualNorm: v.fuseResidualNorm, cacheOutputs: cacheOutputsOn('cpu') });
    return ModelSession.create(model.spec, model.weights, { maxBatch: batch, maxContext, threads, target, graph });
  }),
);
console.log(`${args.model}, ${dtype}, ${threads} thread(s), batch ${batch}, ${promptTokens}-token prompt, ${steps} steps a round`);
for (let round = 1; round <= rounds; round++) {
  const times = sessions.map(() => [] as number[]);
  for (const s of sessions) {
    for (let slot = 0; slot < batch; slot++) {
      s.reset(slot);
      await s.prefill(slot, prompt);
    }
  }
  for (let i = 0; i < steps; i++) {
    for (const [j, s] of sessions.entries()) {
      const t0 = performance.now();
      await s.decode(Array.from({ length: batch }, (_, slot) => ({ slot, token: 5 + (i % 50) })));
      if (i >= 4) times[j]!.push(performance.now() - t0);
    }
  }
  const [a, b] = times.map(median) as [number, number];
  console.log(`round ${round}: ${variants[0]!.name} ${a.toFixed(2)} ms, ${variants[1]!.name} ${b.toFixed(2)} ms a step (${(100 * (1 - a / b)).toFixed(1)}% less)`);
}
for (const s of sessions) await s.release();
