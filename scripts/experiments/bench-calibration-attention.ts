/**
 * What the calibration graph's two attention kernels cost (CalibrationGraphOptions.attention):
 * ORT's GroupQueryAttention (the default) against MatMul/Softmax ops, each a MaskedForward session
 * over the same model, passes of `--rows` × `--seq-len` tokens interleaved (A B A B …), median
 * wall time per pass. Models: the bundled stories260K (head 8, padded to 16 for GQA) and a
 * synthetic hidden-256 / head-32 shape (4 layers, 8 heads over 4 KV heads, ffn 688, vocabulary 1024).
 *
 *   node --import tsx scripts/experiments/bench-calibration-attention.ts [--rows 32] [--seq-len 128] [--runs 8] [--threads 2]
 */
import os from 'node:os';
import { fullPlan } from '../../src/mop/pruning-plan.ts';
import { openMaskedForward } from '../../src/runtime/calibration/ort-masked-forward.ts';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import { syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import { median } from '../lib/stats.ts';
import { parseScriptArgs } from '../lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, {
  rows: { type: 'string', default: '32' },
  'seq-len': { type: 'string', default: '128' },
  runs: { type: 'string', default: '8' },
  threads: { type: 'string', default: String(Math.min(2, os.availableParallelism())) },
});
const [rows, seqLen, runs, threads] = [args.rows, args['seq-len'], args.runs, args.threads].map(Number) as [number, number, number, number];

const wide = syntheticSpec({ vocabSize: 1024, hidden: 256, layers: 4, heads: 8, kvHeads: 4, ffn: 688, maxContext: 2048 });
const models = [
  { name: 'stories260K', ...(await loadModel(defaultModelPath())) },
  { name: 'hidden 256, head 32', spec: wide, weights: syntheticWeights(wide, 1) },
];
console.log(`${rows} × ${seqLen} tokens a pass, ${threads} thread(s), median of ${runs} passes`);
for (const m of models) {
  const ids = Int32Array.from({ length: rows * seqLen }, (_, k) => 1 + ((k * 104729) % (m.spec.vocabSize - 1)));
  const batch = { rows, seqLen, ids };
  const kinds = ['gqa', 'plain'] as const;
  const forwards = await Promise.all(kinds.map((attention) => openMaskedForward(m.spec, m.weights, { maxSeqLen: seqLen, threads, attention })));
  const times = kinds.map(() => [] as number[]);
  const plan = fullPlan(m.spec);
  for (let r = 0; r < runs + 1; r++) {
    for (const [k, f] of forwards.entries()) {
      const t0 = performance.now();
      await f.run(batch, plan, { logits: true, taps: true }, f.emptyTaps());
      if (r > 0) times[k]!.push(performance.now() - t0);
    }
  }
  console.log(`${m.name}: gqa ${median(times[0]!).toFixed(1)} ms, plain ${median(times[1]!).toFixed(1)} ms a pass`);
  for (const f of forwards) await f.release();
}
