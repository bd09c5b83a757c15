/**
 * What sampling and detokenization cost per token on a 32k vocabulary, beside the decode step they follow. Times `Sequence.step` (sampler,
 * detokenizer, stop matcher: everything the engine worker does between a step's logits and its
 * token event) over realistic logits, for the sampling settings clients send, and one int8 decode
 * step of the same model for scale. Writes bench-out/sampling.json and prints a Markdown table.
 *
 *   node --import tsx scripts/experiments/bench-sampling.ts [--model DIR] [--tokens 400] [--threads 2]
 *
 * --model: default the synthetic 100m under bench-out/ (written by `mop synth` when missing).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { targetFor } from '../../src/runtime/device/device.ts';
import { timeDecode } from '../../src/runtime/engine/decode-timing.ts';
import { defaultSamplingParams, type SamplingParams } from '../../src/runtime/engine/sampling-params.ts';
import { Sequence } from '../../src/runtime/engine/sequence.ts';
import { createRng } from '../../src/runtime/engine/rng.ts';
import { loadModel } from '../../src/runtime/model/load.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { median } from '../lib/stats.ts';
import { parseScriptArgs } from '../lib/script-args.ts';
import { log } from '../lib/log.ts';
import { synthModelDir } from '../lib/synth-model-dir.ts';
import { repoRoot } from '../lib/repo-root.ts';

const args = parseScriptArgs(import.meta.url, { model: { type: 'string' }, tokens: { type: 'string', default: '400' }, threads: { type: 'string', default: '2' } });


/** Logits shaped like a language model's: a few strong candidates over a long low tail. */
function realisticLogits(vocab: number, seed: number): Float32Array {
  const rng = createRng(seed);
  const x = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) x[i] = -4 + 3 * (rng.nextFloat() + rng.nextFloat() + rng.nextFloat() - 1.5);
  for (let k = 0; k < 20; k++) x[Math.floor(rng.nextFloat() * vocab)] = 6 + 4 * rng.nextFloat();
  return x;
}

const settings: { name: string; sampling: Partial<SamplingParams> }[] = [
  { name: 'greedy (temperature 0)', sampling: { temperature: 0 } },
  { name: 'temperature 0.8', sampling: { temperature: 0.8 } },
  { name: 'temperature 0.8, top_p 0.95', sampling: { temperature: 0.8, topP: 0.95 } },
  { name: 'temperature 0.8, top_k 40', sampling: { temperature: 0.8, topK: 40 } },
  { name: 'greedy + logprobs 5', sampling: { temperature: 0, logprobs: 5 } },
  { name: 'temperature 0.8 + repetition/frequency penalties', sampling: { temperature: 0.8, repetitionPenalty: 1.1, frequencyPenalty: 0.5 } },
];

const modelDir = args.model ?? synthModelDir('100m', log);
const model = await loadModel(modelDir);
const tokenizer = createTokenizer(model.tokenizer);
const vocab = model.spec.vocabSize;
const tokens = Number(args.tokens);
const logits = Array.from({ length: 16 }, (_, k) => realisticLogits(vocab, 100 + k));
const rows: { setting: string; usPerToken: number }[] = [];
for (const s of settings) {
  const per: number[] = [];
  for (let rep = 0; rep < 5; rep++) {
    const seq = new Sequence({ promptTokens: [1, 5, 9], maxTokens: tokens + 1, sampling: defaultSamplingParams({ seed: rep, ...s.sampling }), ignoreEos: true }, tokenizer, vocab);
    const t0 = performance.now();
    for (let i = 0; i < tokens; i++) seq.step(logits[i % logits.length]!);
    per.push(((performance.now() - t0) * 1000) / tokens);
  }
  rows.push({ setting: s.name, usPerToken: median(per) });
}
const step = await timeDecode({ spec: model.spec, weights: model.weights }, { batch: 1, promptTokens: 64, steps: 30, warmup: 4, threads: Number(args.threads), target: targetFor('cpu', 'int8') });
const stepUs = step.medianMs * 1000;
const out = { model: path.relative(repoRoot, modelDir), vocab, tokens, decodeStepUs: stepUs, rows };
await fs.mkdir(path.join(repoRoot, 'bench-out'), { recursive: true });
await fs.writeFile(path.join(repoRoot, 'bench-out', 'sampling.json'), JSON.stringify(out, null, 2) + '\n');
process.stdout.write(`Sampling + detokenization per token (Sequence.step, vocabulary ${vocab}, median of 5 × ${tokens} tokens) vs one int8 decode step at batch 1 (${(stepUs / 1000).toFixed(1)} ms):\n\n| setting | µs per token | share of a decode step |\n| --- | ---: | ---: |\n`);
for (const r of rows) process.stdout.write(`| ${r.setting} | ${r.usPerToken.toFixed(0)} | ${((100 * r.usPerToken) / stepUs).toFixed(2)}% |\n`);
