/**
 * Recovery training speed: training tokens/s (positions trained per second of wall time, forward +
 * backward + AdamW) and peak RSS, for full fine-tuning and LoRA, with cross-entropy, at batch
 * 4 × 128, on the bundled stories260K (real text) and on the synthetic ~100M shape (random weights
 * and tokens: only speed and memory mean anything there). Each configuration runs in its own
 * process so its peak RSS is its own. Not a test.
 *
 *   node --import tsx scripts/experiments/bench-recovery-speed.ts [--models bundled,100m] [--kinds full,lora] [--steps-bundled 20] [--steps-100m 4] [--threads N]
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';
import { defaultModelPath, loadModel, packageRoot } from '../../src/runtime/model/load.ts';
import { type ModelSpec, parameterCounts } from '../../src/runtime/model/spec.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { recover, type RecoveryKind } from '../../src/runtime/train/recover.ts';
import { loadBenchModel } from '../lib/bench-model.ts';
import { parseScriptArgs } from '../lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, {
  models: { type: 'string', default: 'bundled,100m' },
  kinds: { type: 'string', default: 'full,lora' },
  'steps-bundled': { type: 'string', default: '20' },
  'steps-100m': { type: 'string', default: '4' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  one: { type: 'string' },
});
const BATCH = 4;
const SEQ = 128;

interface Measurement {
  model: string;
  kind: RecoveryKind;
  parameters: number;
  trainable: number;
  steps: number;
  /** Steady state: steps after the first (ORT's first run allocates). */
  tokensPerSecond: number;
  secondsPerStep: number;
  buildSeconds: number;
  peakRssMiB: number;
}

async function measureOne(model: string, kind: RecoveryKind): Promise<Measurement> {
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
  const first = marks[0]!;
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
    buildSeconds: total - r.report.seconds,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

if (args.one) {
  const [model, kind] = args.one.split(':') as [string, RecoveryKind];
  console.log(JSON.stringify(await measureOne(model, kind)));
} else {
  console.log(`recovery training speed, batch ${BATCH}×${SEQ}, cross-entropy, ${args.threads} thread(s), ${os.cpus()[0]?.model ?? 'cpu'}`);
  console.log('| model | kind | params | trainable | s/step | train tokens/s | graph+session build s | peak RSS MiB |');
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const model of args.models.split(',')) {
    for (const kind of args.kinds.split(',') as RecoveryKind[]) {
      const out = execFileSync(process.execPath, ['--import', 'tsx', process.argv[1]!, '--one', `${model}:${kind}`, '--threads', args.threads, '--steps-bundled', args['steps-bundled'], '--steps-100m', args['steps-100m']], { encoding: 'utf8', maxBuffer: 1 << 24 });
      const m = JSON.parse(out.trim().split('\n').at(-1)!) as Measurement;
      console.log(`| ${m.model} | ${m.kind} | ${(m.parameters / 1e6).toFixed(2)}M | ${(m.trainable / 1e6).toFixed(3)}M | ${m.secondsPerStep.toFixed(3)} | ${m.tokensPerSecond.toFixed(0)} | ${m.buildSeconds.toFixed(1)} | ${m.peakRssMiB.toFixed(0)} |`);
    }
  }
}
