/**
 * How fast a cancel stops a recovery run. Runs the default recovery recipe (full fine-tuning, distillation, 16 × 128 per step) on the
 * synthetic 100M shape (random weights and tokens: only time means anything here), aborts at a
 * random moment after the first step, and measures from the moment the cancel was due to the
 * rejection. Twice per rep: with the
 * default rows per ONNX Runtime run (trainingRowsPerRun) and with the whole batch in one run (how
 * a step ran before). Not a test.
 *
 *   node --import tsx scripts/experiments/bench-recovery-cancel.ts [--model 100m|bundled] [--reps 3] [--threads 2]
 */
import { loadBenchModel } from '../lib/bench-model.ts';
import { createRng } from '../../src/runtime/engine/rng.ts';
import { recover, trainingRowsPerRun } from '../../src/runtime/train/recover.ts';
import { parseScriptArgs } from '../lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, { model: { type: 'string', default: '100m' }, reps: { type: 'string', default: '3' }, threads: { type: 'string', default: '2' } });
const model = await loadBenchModel(args.model!);
const { spec } = model;
const rng = createRng(7);
const windows = Array.from({ length: 64 }, () => Int32Array.from({ length: 129 }, () => 3 + Math.floor(rng.nextFloat() * (spec.vocabSize - 3))));
const batch = 16;
const seqLen = 128;
const pieces = trainingRowsPerRun(spec, seqLen, batch);
const rows: { rowsPerRun: number; stepSeconds: number; cancelMs: number[] }[] = [];
for (const rowsPerRun of [pieces, batch]) {
  const cancelMs: number[] = [];
  let stepSeconds = 0;
  for (let rep = 0; rep < Number(args.reps); rep++) {
    const ac = new AbortController();
    let abortedAt = 0;
    let armed = false;
    const run = recover(model, { kind: 'full', loss: 'kd', steps: 1000, batch, seqLen, rowsPerRun, threads: Number(args.threads) }, { windows, teacher: model }, {
      signal: ac.signal,
      onProgress: (p) => {
        stepSeconds = p.elapsedSeconds / p.step;
        if (armed) return;
        armed = true;
        // A random moment within the next step: where in a step the cancel lands is what varies.
        // The timer shares this thread with training, as a cancel message shares the prune worker's:
        // it fires only between ONNX Runtime runs, so the latency counts from when it was due.
        const delay = rng.nextFloat() * stepSeconds * 1000;
        abortedAt = performance.now() + delay;
        setTimeout(() => ac.abort(), delay);
      },
    });
    try {
      await run;
      throw new Error('the run was not cancelled');
    } catch (e) {
      if ((e as Error).name !== 'AbortError') throw e;
      cancelMs.push(performance.now() - abortedAt);
    }
    process.stderr.write(`rows per run ${rowsPerRun}: rep ${rep + 1}: cancel took ${cancelMs.at(-1)!.toFixed(0)} ms (a step takes ${stepSeconds.toFixed(1)} s)\n`);
  }
  rows.push({ rowsPerRun, stepSeconds, cancelMs });
}
process.stdout.write(`Recovery cancel latency, ${args.model} (${spec.layers.length} layers, hidden ${spec.hidden}), full + kd, ${batch} × ${seqLen} per step, ${args.threads} threads:\n\n| rows per ONNX Runtime run | step s | cancel ms (each rep) | worst |\n| ---: | ---: | --- | ---: |\n`);
for (const r of rows) process.stdout.write(`| ${r.rowsPerRun}${r.rowsPerRun === pieces ? ' (default)' : ' (whole batch)'} | ${r.stepSeconds.toFixed(1)} | ${r.cancelMs.map((m) => m.toFixed(0)).join(', ')} | ${Math.max(...r.cancelMs).toFixed(0)} |\n`);
