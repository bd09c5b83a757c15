/**
 * The per-step KV-cache copy in onnxruntime-node (issue 14, item 3): step time of the 100M shape
 * (int8 weights) with the cache's present_* outputs fetched into pre-allocated tensors on the past
 * buffers (what the engine does), against fetching `logits` alone; and whether the output tensor
 * is our buffer, and whether the new position reached our cache. Prints one line per case.
 *
 *   B=8 C=128,1024 node --import tsx scripts/bench-kv-copy.ts
 */
import * as ort from 'onnxruntime-node';
import { buildDecoderGraph } from '../src/runtime/onnx/decoder-graph.ts';
import { createOrtSession } from '../src/runtime/device/ort-session.ts';
import { syntheticSpec, syntheticWeights } from '../src/runtime/model/synthetic.ts';
const spec = syntheticSpec({ vocabSize: 32000, hidden: 768, layers: 12, heads: 12, kvHeads: 4, ffn: 2048, maxContext: 2048 });
const g = buildDecoderGraph(spec, syntheticWeights(spec, 1), { maxContext: 2048, logits: 'last', weights: 'int8' });
const s = await createOrtSession(g.model, 'cpu', { threads: 2 });
const B = Number(process.env.B ?? 8);
for (const C of (process.env.C ?? "128,1024").split(",").map(Number)) {
  const n = B * 4 * C * 64;
  const bufs = g.kvLayers.map(() => [new Float32Array(n), new Float32Array(n)]);
  const feeds = (pos: number): Record<string, ort.Tensor> => {
    const f: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', BigInt64Array.from({ length: B }, () => 5n), [B, 1]), seqlens_k: new ort.Tensor('int32', Int32Array.from({ length: B }, () => pos), [B]), total_sequence_length: new ort.Tensor('int32', Int32Array.of(pos + 1), []) };
    g.kvLayers.forEach((l, i) => { f[l.pastKey] = new ort.Tensor('float32', bufs[i]![0]!, [B, 4, C, 64]); f[l.pastValue] = new ort.Tensor('float32', bufs[i]![1]!, [B, 4, C, 64]); });
    return f;
  };
  for (const mode of ['prealloc', 'logits-only', 'prealloc', 'logits-only']) {
    const times: number[] = [];
    let same = false;
    for (let step = 0; step < 12; step++) {
      const pos = 50 + step;
      const f = feeds(pos);
      const fetches = mode === 'prealloc' ? { ...Object.fromEntries(g.kvLayers.flatMap((l) => [[l.presentKey, f[l.pastKey]], [l.presentValue, f[l.pastValue]]])), logits: null } : ['logits'];
      const t0 = performance.now();
      const out = await s.run(f, fetches as never);
      times.push(performance.now() - t0);
      if (mode === 'prealloc') same = (out[g.kvLayers[0]!.presentKey]!.data as Float32Array).buffer === bufs[0]![0]!.buffer;
    }
    // Did the new position land in our buffer? (key of slot 0, head 0, position 61)
    const wrote = bufs[0]![0]!.subarray(61 * 64, 62 * 64).some((x) => x !== 0);
    times.sort((a, b) => a - b);
    console.log(`batch ${B}, capacity ${C}, cache ${(2 * g.kvLayers.length * n * 4 / 1e6).toFixed(0)} MB: ${mode}: median step ${times[6]!.toFixed(2)} ms; output is our buffer: ${mode === 'prealloc' ? same : '-'}; new position written into our cache: ${wrote}`);
    bufs.forEach((b) => { b[0]!.fill(0); b[1]!.fill(0); });
  }
}
