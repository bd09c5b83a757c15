/**
 * The per-step KV-cache copy in onnxruntime-node (issue 14, item 3): decode-step time of a
 * ModelSession whose graph returns the whole cache, fetched into pre-allocated tensors on the past
 * buffers so GQA writes in place (cacheOutputs 'present': the binding then copies the whole bound
 * cache into a fresh JavaScript array every run), against one whose graph returns only the
 * positions the run added, which the cache writes in itself (cacheOutputs 'new', the CPU default).
 * Both sessions serve the same weights; the timed steps alternate between them (A B A B …, so load
 * from other processes hits both alike). Each case fills `--batch` slots to a length that makes the
 * cache hold `capacity` positions (zeros: step time does not depend on the values) and prints the
 * median step of each mode.
 *
 *   node --import tsx scripts/experiments/bench-kv-copy.ts [--model 100m] [--dtype int8] [--threads 2]
 *     [--batch 1,8] [--capacity 128,512,1024] [--steps 12]
 */
import os from 'node:os';
import { loadBenchModel } from '../lib/bench-model.ts';
import { parseDtypeRequest, targetFor } from '../../src/runtime/device/device.ts';
import type { CacheOutputs } from '../../src/runtime/onnx/decoder-attention.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { median } from '../lib/stats.ts';
import { parseScriptArgs } from '../lib/script-args.ts';
import { isPositiveInt, numberListOption } from '../lib/option-values.ts';

const args = parseScriptArgs(import.meta.url, {
  model: { type: 'string', default: '100m' },
  dtype: { type: 'string', default: 'int8' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  batch: { type: 'string', default: '1,8' },
  capacity: { type: 'string', default: '128,512,1024' },
  steps: { type: 'string', default: '12' },
});
const dtype = parseDtypeRequest(args.dtype);
if (dtype !== 'float32' && dtype !== 'int8' && dtype !== 'int4') throw new Error(`--dtype: float32, int8 or int4 (CPU), not '${args.dtype}'`);
const [batches, capacities, steps, threads] = [numberListOption('batch', args.batch, isPositiveInt), numberListOption('capacity', args.capacity, isPositiveInt), Number(args.steps), Number(args.threads)];
const model = await loadBenchModel(args.model);
const maxContext = Math.max(...capacities);
const maxBatch = Math.max(...batches);
const modes: CacheOutputs[] = ['present', 'new'];
const sessions = await Promise.all(modes.map((cacheOutputs) => ModelSession.create(model.spec, model.weights, { maxBatch, maxContext, threads, target: targetFor('cpu', dtype), cacheOutputs })));
const cacheMb = (B: number, C: number) => (2 * sessions[0]!.graph.kvLayers.reduce((n, l) => n + B * l.kvHeads * C * l.cacheHeadDim * 4, 0)) / 1e6;
console.log(`${args.model}, ${dtype}, ${threads} thread(s); median decode step of ${steps}, modes interleaved step by step; load average ${os.loadavg()[0]!.toFixed(2)}`);
for (const B of batches) {
  for (const C of capacities) {
    const times = modes.map(() => [] as number[]);
    for (const s of sessions) for (let slot = 0; slot < maxBatch; slot++) s.cache.lengths[slot] = slot < B ? C - steps - 1 : 0;
    for (let step = 0; step < steps; step++) {
      for (const [k, s] of sessions.entries()) {
        const t0 = performance.now();
        await s.decode(Array.from({ length: B }, (_, slot) => ({ slot, token: 5 + step })));
        times[k]!.push(performance.now() - t0);
      }
    }
    const [whole, fresh] = times.map(median) as [number, number];
    console.log(`batch ${B}, capacity ${C} (${cacheMb(B, C).toFixed(0)} MB of cache bound): whole cache fetched (present) ${whole.toFixed(2)} ms, new positions only (new) ${fresh.toFixed(2)} ms, ${(fresh / whole).toFixed(2)}×`);
  }
}
await Promise.all(sessions.map((s) => s.release()));
