/**
 * Recovery experiment on the bundled model: prune to a target with MoP (default settings, 32×128
 * calibration, seed 0), then fine-tune the pruned model with each recipe and report held-out
 * perplexity before and after. Recovery text is the bundled first recovery slice
 * (data/tinystories-recovery-start.txt, the calibration slice until 2026-12-03) cut into BOS + seqLen windows; evaluation is the disjoint
 * held-out slice (data/tinystories-heldout.txt) in non-overlapping windows of 256, as
 * `npm run bench:quality` measures it. Not a test.
 *
 *   node --import tsx scripts/experiments/recovery-experiment.ts [--target 0.4] [--steps 300] [--recipes kd-full,ce-full,kd-lora] [--kd-alpha 0.75] [--threads N]
 */
import fs from 'node:fs';
import os from 'node:os';
import { defaultHeldoutPath, loadCalibration } from '../../src/mop/calibration.ts';
import { defaultRecoveryStartPath } from '../../src/mop/recovery-data.ts';
import { perplexity, textWindows } from '../../src/mop/evaluate.ts';
import { runMop } from '../../src/mop/mop.ts';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { recover, type RecoveryOptions } from '../../src/runtime/train/recover.ts';
import { parseScriptArgs } from '../lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, {
  target: { type: 'string', default: '0.4' },
  steps: { type: 'string', default: '300' },
  batch: { type: 'string', default: '16' },
  'seq-len': { type: 'string', default: '128' },
  lr: { type: 'string', default: '2e-3' },
  'lora-lr': { type: 'string', default: '5e-3' },
  'kd-alpha': { type: 'string', default: '0.75' },
  recipes: { type: 'string', default: 'kd-full,ce-full,kd-lora' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
});
const threads = Number(args.threads);
const seqLen = Number(args['seq-len']);

const dense = await loadModel(defaultModelPath());
const tokenizer = createTokenizer(dense.tokenizer);
const heldout = textWindows(tokenizer, fs.readFileSync(defaultHeldoutPath(), 'utf8'), 256);
const denseModel = { spec: dense.spec, weights: dense.weights };
const densePpl = (await perplexity(denseModel, heldout, { threads })).perplexity;

const calibration = await loadCalibration(tokenizer, { samples: 32, seqLen: 128, seed: 0 });
const t0 = performance.now();
const pruned = (await runMop(denseModel, { target: Number(args.target), calibration, seed: 0, threads })).model;
const pruneSeconds = (performance.now() - t0) / 1000;
const prunedPpl = (await perplexity(pruned, heldout, { threads })).perplexity;

const stream = tokenizer.encode(fs.readFileSync(defaultRecoveryStartPath(), 'utf8'), { addBos: false });
const windows: Int32Array[] = [];
for (let off = 0; off + seqLen <= stream.length; off += seqLen) windows.push(Int32Array.from([dense.spec.bosTokenId, ...stream.slice(off, off + seqLen)]));

console.log(`bundled stories260K, MoP ${args.target}, kd α ${args['kd-alpha']} (${pruneSeconds.toFixed(1)} s), held-out ${heldout.tokens} tokens; recovery text ${windows.length} windows of ${seqLen + 1} tokens; ${threads} thread(s)`);
console.log(`dense ppl ${densePpl.toFixed(3)}; pruned ppl ${prunedPpl.toFixed(3)} (${(prunedPpl / densePpl).toFixed(2)}× dense)`);
console.log('| recipe | steps × batch × seq | lr | recovery s | train tokens/s | loss first → last | held-out ppl after | × dense |');
console.log('| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |');
for (const recipe of args.recipes.split(',')) {
  const [loss, kind] = recipe.split('-') as [RecoveryOptions['loss'], RecoveryOptions['kind']];
  const lr = Number(kind === 'lora' ? args['lora-lr'] : args.lr);
  const steps = Number(args.steps);
  const r = await recover(pruned, { kind, loss, kdAlpha: Number(args['kd-alpha']), steps, batch: Number(args.batch), seqLen, lr, warmup: Math.round(steps / 15), threads, seed: 0 }, { windows, teacher: denseModel });
  const ppl = (await perplexity(r, heldout, { threads })).perplexity;
  console.log(
    `| ${recipe} | ${steps} × ${args.batch} × ${seqLen} | ${lr} | ${r.report.seconds.toFixed(1)} | ${r.report.tokensPerSecond.toFixed(0)} | ${r.report.firstLoss.toFixed(3)} → ${r.report.finalLoss.toFixed(3)} | ${ppl.toFixed(3)} | ${(ppl / densePpl).toFixed(2)} |`,
  );
}
