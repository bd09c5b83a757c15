/**
 * Structured outputs' cost per token beside the model step: a JSON schema constraint (xgrammar,
 * as the server compiles it) on every sequence of a batch, at batch 1 and 8, on the ~100M
 * synthetic model (32000-token vocabulary, random weights). Per decode step it times:
 *   - the batched decode step (ONNX Runtime);
 *   - sampling every row without a constraint (the sampler's own work, for scale);
 *   - the work a constraint adds per row, timed directly: taking the row's mask, applying it to
 *     the logits (as the sampler does), accepting the sampled token in the matcher, and computing
 *     the next mask (the engine asks for it right after the accept; it runs in the microtasks
 *     before the next macrotask, so it is timed as one setImmediate wait minus an empty one).
 * Reported per step (all rows), per token, and as a share of the decode step (target: at most 10%
 * at batch 8). A sequence whose JSON is complete starts a new one, so every step is constrained.
 * Grammar compilation (once per distinct schema, cached) is reported apart.
 *
 *   npm run bench:structured -- [--model 100m] [--batches 1,8] [--steps 48] [--threads N]
 *     [--out docs/structured-outputs-report.json]   (the .md beside it)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadBenchModel } from './lib/bench-model.ts';
import { parseScriptArgs } from './lib/script-args.ts';
import { median } from './lib/stats.ts';
import { ModelSession } from '../src/runtime/engine/ort-decoder-session.ts';
import { Sampler, TokenHistory } from '../src/runtime/engine/sampler.ts';
import { applyTokenMask } from '../src/runtime/engine/token-mask.ts';
import { defaultSamplingParams } from '../src/runtime/engine/sampling-params.ts';
import { GrammarCompiler } from '../src/runtime/grammar/grammar-compiler.ts';
import type { GrammarConstraint } from '../src/runtime/grammar/grammar-constraint.ts';
import type { GrammarSpec } from '../src/runtime/grammar/grammar-spec.ts';
import { grammarVocabulary } from '../src/runtime/grammar/vocabulary.ts';
import { createTokenizer } from '../src/runtime/tokenizer/create.ts';

const args = parseScriptArgs(import.meta.url, {
  model: { type: 'string', default: '100m' },
  batches: { type: 'string', default: '1,8' },
  steps: { type: 'string', default: '48' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  out: { type: 'string', default: 'docs/structured-outputs-report.json' },
});
const batches = args.batches.split(',').map(Number);
const steps = Number(args.steps);

const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 24 },
    age: { type: 'integer', minimum: 0, maximum: 150 },
    tags: { type: 'array', items: { enum: ['red', 'green', 'blue'] }, maxItems: 4 },
    ok: { type: 'boolean' },
  },
  required: ['name', 'age', 'tags', 'ok'],
};
const spec: GrammarSpec = { kind: 'json', schema: JSON.stringify(SCHEMA) };

interface Row {
  batch: number;
  decodeMsPerStep: number;
  plainSamplingMsPerStep: number;
  maskOverheadMsPerStep: number;
  maskOverheadMsPerToken: number;
  overheadShareOfDecodeStep: number;
}

const model = await loadBenchModel(args.model);
const { spec: modelSpec, weights } = model;
const tokenizer = createTokenizer(model.tokenizer);
const maxBatch = Math.max(...batches);
const session = await ModelSession.create(modelSpec, weights, { maxBatch, maxContext: 64 + steps + 8, threads: Number(args.threads) });
const compiler = new GrammarCompiler(grammarVocabulary(tokenizer, modelSpec.vocabSize));
let t = performance.now();
await compiler.compile(spec);
const compileMs = performance.now() - t;
process.stderr.write(`${args.model}: vocabulary ${modelSpec.vocabSize}, schema compiled in ${compileMs.toFixed(0)} ms (module start and vocabulary included)\n`);

const rows: Row[] = [];
const prompt = Array.from({ length: 32 }, (_, i) => 3 + ((i * 31) % 250));
for (const batch of batches) {
  const slots = Array.from({ length: batch }, (_, i) => i);
  const rowsOf = slots.map((slot) => ({
    slot,
    plain: new Sampler(defaultSamplingParams({ temperature: 1, seed: slot }), modelSpec.vocabSize),
    constrained: new Sampler(defaultSamplingParams({ temperature: 1, seed: slot }), modelSpec.vocabSize),
    history: new TokenHistory(prompt),
    constraint: undefined as GrammarConstraint | undefined,
  }));
  for (const r of rowsOf) {
    session.reset(r.slot);
    await session.prefill(r.slot, prompt);
    r.constraint = await compiler.constraint(spec);
  }
  // Let the first masks (computed after each matcher starts) land, as they would during prefill.
  await new Promise((resolve) => setImmediate(resolve));
  const decode: number[] = [];
  const plain: number[] = [];
  const overheads: number[] = [];
  const scratch = new Float32Array(modelSpec.vocabSize);
  const tick = () => new Promise((resolve) => setImmediate(resolve));
  let tokens = rowsOf.map(() => 5);
  for (let step = 0; step < steps; step++) {
    t = performance.now();
    const logits = await session.decode(rowsOf.map((r, k) => ({ slot: r.slot, token: tokens[k]! })));
    decode.push(performance.now() - t);
    t = performance.now();
    for (const [k, r] of rowsOf.entries()) r.plain.sample(logits[k]!, r.history);
    plain.push(performance.now() - t);
    tokens = [];
    let overhead = 0;
    for (const [k, r] of rowsOf.entries()) {
      t = performance.now();
      const mask = r.constraint!.mask();
      scratch.set(logits[k]!);
      applyTokenMask(scratch, mask);
      overhead += performance.now() - t;
      const s = r.constrained.sample(logits[k]!, r.history, mask);
      t = performance.now();
      r.constraint!.accept(s.token);
      overhead += performance.now() - t;
      tokens.push(s.token);
    }
    // The next masks are computed in the microtasks that follow the accepts.
    t = performance.now();
    await tick();
    const withMasks = performance.now() - t;
    t = performance.now();
    await tick();
    overheads.push(overhead + Math.max(0, withMasks - (performance.now() - t)));
    for (const r of rowsOf) {
      if (!r.constraint!.terminated) continue;
      r.constraint!.release();
      r.constraint = await compiler.constraint(spec);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  for (const r of rowsOf) r.constraint?.release();
  const decodeMs = median(decode);
  const overhead = median(overheads);
  const row: Row = {
    batch,
    decodeMsPerStep: decodeMs,
    plainSamplingMsPerStep: median(plain),
    maskOverheadMsPerStep: overhead,
    maskOverheadMsPerToken: overhead / batch,
    overheadShareOfDecodeStep: overhead / decodeMs,
  };
  rows.push(row);
  process.stderr.write(`  batch ${batch}: decode ${decodeMs.toFixed(2)} ms/step, mask overhead ${overhead.toFixed(3)} ms/step (${(row.overheadShareOfDecodeStep * 100).toFixed(1)}%)\n`);
}
await session.release();

const report = { date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), threads: Number(args.threads), node: process.version, loadAvg: os.loadavg(), model: args.model, vocabSize: modelSpec.vocabSize, steps, compileMs, schema: SCHEMA, rows };
const markdown = renderMarkdown(report);
fs.mkdirSync(path.dirname(args.out), { recursive: true });
fs.writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');
fs.writeFileSync(args.out.replace(/\.json$/, '') + '.md', markdown);
console.log(markdown);
console.log(`written ${args.out} and its .md`);

function renderMarkdown(r: typeof report): string {
  const lines = [
    '# Structured outputs: mask cost beside the decode step',
    '',
    `Generated by \`npm run bench:structured\` (scripts/bench-structured.ts) on ${r.date.slice(0, 10)}: ${r.cpu} (${r.cores} cores, ${r.threads} ONNX Runtime threads, load average ${r.loadAvg.map((x) => x.toFixed(1)).join(' ')}), Node ${r.node}.`,
    '',
    `Model: the ${r.model} synthetic shape (${r.vocabSize}-token vocabulary, random weights, float32 on the CPU). Every sequence of the batch is constrained by one JSON schema (object with a bounded string, an integer range, an enum array and a boolean), compiled once in ${r.compileMs.toFixed(0)} ms (xgrammar's module start and the vocabulary's token-mask cache included; later requests with the same schema reuse it). ${r.steps} decode steps per batch size; medians per step.`,
    '',
    'The overhead is the work a constraint adds per row, timed directly: taking the mask, applying it to the logits, accepting the sampled token in the matcher and computing the next mask. Sampling without a constraint is shown for scale.',
    '',
    '| batch | decode ms/step | sampling ms/step (no constraint) | mask overhead ms/step | per token | share of the decode step |',
    '| ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.rows.map((x) => `| ${x.batch} | ${x.decodeMsPerStep.toFixed(2)} | ${x.plainSamplingMsPerStep.toFixed(3)} | ${x.maskOverheadMsPerStep.toFixed(3)} | ${x.maskOverheadMsPerToken.toFixed(3)} | ${(x.overheadShareOfDecodeStep * 100).toFixed(1)}% |`),
    '',
  ];
  const b8 = r.rows.find((x) => x.batch === 8);
  if (b8) lines.push(`Target: at most 10% of the decode step at batch 8 — ${b8.overheadShareOfDecodeStep <= 0.1 ? 'met' : 'missed'} (${(b8.overheadShareOfDecodeStep * 100).toFixed(1)}%).`, '');
  return lines.join('\n');
}
