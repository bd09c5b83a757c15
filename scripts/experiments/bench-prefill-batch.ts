/**
 * Batched prefill across requests: a burst of fresh prompts prefilled one ORT run per prompt
 * (session.prefill, slot by slot) vs together (session.prefillBatch: right-padded "first prompt"
 * runs of GroupQueryAttention). Same session, same graph, same prompts; the median of --reps
 * timed repetitions each way (alternating which goes first), after one warm-up of each. Prefill
 * tokens/s counts real prompt tokens only (padding is the batched path's cost, not its output).
 * It also reports the mean time until each prompt's logits (its first token) are ready, where
 * sequential prefill has the edge (the first prompt is done after one run), and checks that both
 * ways give the same last-position logits.
 *
 *   node --import tsx scripts/experiments/bench-prefill-batch.ts [--models bundled,100m] [--threads 2]
 *     [--prompts 8] [--min 32] [--max 64] [--reps 7] [--padding 1.5] [--dtype float32|int8]
 *     [--out bench-out/prefill-batch.json]
 *
 * 100m is the synthetic ~100M-parameter LLaMA-shaped model of `mop synth --preset 100m` (random
 * weights, built in memory: speed does not depend on their values).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadBenchModel } from '../lib/bench-model.ts';
import { BATCH_PREFILL_PADDING, freshPromptGroups, ModelSession, type PrefillEntry } from '../../src/runtime/engine/ort-decoder-session.ts';
import { parameterCounts } from '../../src/runtime/model/spec.ts';
import { median } from '../lib/stats.ts';
import { parseScriptArgs } from '../lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, {
  models: { type: 'string', default: 'bundled,100m' },
  threads: { type: 'string', default: '2' },
  prompts: { type: 'string', default: '8' },
  min: { type: 'string', default: '32' },
  max: { type: 'string', default: '64' },
  reps: { type: 'string', default: '7' },
  padding: { type: 'string', default: String(BATCH_PREFILL_PADDING) },
  dtype: { type: 'string', default: 'float32' },
  out: { type: 'string', default: 'bench-out/prefill-batch.json' },
});
const threads = Number(args.threads);
const nPrompts = Number(args.prompts);
const [minLen, maxLen] = [Number(args.min), Number(args.max)];
const reps = Number(args.reps);
const padding = Number(args.padding);
if (args.dtype !== 'float32' && args.dtype !== 'int8') throw new Error(`--dtype: float32 or int8, not ${args.dtype}`);
const target = args.dtype === 'float32' ? { device: 'cpu' as const, dtype: 'float32' as const } : { device: 'cpu' as const, dtype: 'float32' as const, weights: 'int8' as const };


interface Row {
  model: string;
  params: number;
  prompts: number;
  promptLengths: number[];
  tokens: number;
  paddedTokens: number;
  batchRuns: number;
  sequentialMs: number[];
  batchedMs: number[];
  sequentialTokensPerSec: number;
  batchedTokensPerSec: number;
  speedup: number;
  /** Median over reps of the mean time until a prompt's logits were ready (its first token), each way. */
  sequentialMeanFirstTokenMs: number;
  batchedMeanFirstTokenMs: number;
  /** Median CPU milliseconds (all threads) per token, each way. */
  sequentialCpuMsPerToken: number;
  batchedCpuMsPerToken: number;
  maxAbsLogitDiff: number;
}

const rows: Row[] = [];
for (const name of args.models.split(',')) {
  const { spec, weights } = await loadBenchModel(name);
  const session = await ModelSession.create(spec, weights, { maxBatch: nPrompts, maxContext: Math.min(spec.maxContext, maxLen + 8), threads, target, batchPrefill: true, batchPrefillPadding: padding });
  // Lengths spread over [min, max] (deterministic), token ids fixed and inside the vocabulary.
  const entries: PrefillEntry[] = Array.from({ length: nPrompts }, (_, slot) => {
    const n = minLen + ((slot * 37) % (maxLen - minLen + 1));
    return { slot, tokens: Array.from({ length: n }, (_, j) => 1 + ((slot * 101 + j * 31) % (spec.vocabSize - 1))) };
  });
  const tokens = entries.reduce((n, e) => n + e.tokens.length, 0);
  const groups = freshPromptGroups(entries, () => 0, session.prefillChunk, padding);
  const lone = entries.length - groups.flat().length;
  const paddedTokens = groups.reduce((n, g) => n + g.length * Math.max(...g.map((i) => entries[i]!.tokens.length)), 0) + entries.filter((_, i) => !groups.flat().includes(i)).reduce((n, e) => n + e.tokens.length, 0);
  const resetAll = () => entries.forEach((e) => session.reset(e.slot));
  // Wall time, and the process's CPU time (user + system), which a busy shared machine disturbs less.
  // Also when each prompt's logits (its first token) were ready: one after another sequentially,
  // all at once batched.
  const timed = async (run: (ready: number[], t: number) => Promise<Float32Array[]>) => {
    resetAll();
    const [t, c] = [performance.now(), process.cpuUsage()];
    const ready: number[] = [];
    const out = await run(ready, t);
    const cpu = process.cpuUsage(c);
    const ms = performance.now() - t;
    return { ms, cpuMs: (cpu.user + cpu.system) / 1000, meanReadyMs: ready.length ? ready.reduce((a, b) => a + b, 0) / ready.length : ms, out };
  };
  const sequential = () =>
    timed(async (ready, t) => {
      const out: Float32Array[] = [];
      for (const e of entries) {
        out.push(await session.prefill(e.slot, e.tokens));
        ready.push(performance.now() - t);
      }
      return out;
    });
  const batched = () => timed(() => session.prefillBatch(entries));
  // Warm-up (arenas, kernel choice), and the logits check.
  const [ws, wb] = [await sequential(), await batched()];
  let maxAbsLogitDiff = 0;
  ws.out.forEach((l, k) => l.forEach((x, i) => (maxAbsLogitDiff = Math.max(maxAbsLogitDiff, Math.abs(x - wb.out[k]![i]!)))));
  type Timing = { ms: number; cpuMs: number; meanReadyMs: number };
  const seq: Timing[] = [];
  const bat: Timing[] = [];
  for (let r = 0; r < reps; r++) {
    if (r % 2 === 0) {
      seq.push(await sequential());
      bat.push(await batched());
    } else {
      bat.push(await batched());
      seq.push(await sequential());
    }
  }
  const seqMs = seq.map((x) => x.ms);
  const batMs = bat.map((x) => x.ms);
  await session.release();
  const row: Row = {
    model: name,
    params: parameterCounts(spec).total,
    prompts: nPrompts,
    promptLengths: entries.map((e) => e.tokens.length),
    tokens,
    paddedTokens,
    batchRuns: groups.length + lone,
    sequentialMs: seqMs,
    batchedMs: batMs,
    sequentialTokensPerSec: (tokens * 1000) / median(seqMs),
    batchedTokensPerSec: (tokens * 1000) / median(batMs),
    speedup: median(seqMs) / median(batMs),
    sequentialMeanFirstTokenMs: median(seq.map((x) => x.meanReadyMs)),
    batchedMeanFirstTokenMs: median(bat.map((x) => x.meanReadyMs)),
    sequentialCpuMsPerToken: median(seq.map((x) => x.cpuMs)) / tokens,
    batchedCpuMsPerToken: median(bat.map((x) => x.cpuMs)) / tokens,
    maxAbsLogitDiff,
  };
  rows.push(row);
  process.stderr.write(
    `${name} (${(row.params / 1e6).toFixed(1)}M, ${args.dtype}, ${threads} threads): ${nPrompts} prompts, ${tokens} tokens (${paddedTokens} padded, ${row.batchRuns} batched runs): ` +
      `sequential ${row.sequentialTokensPerSec.toFixed(0)} tok/s, batched ${row.batchedTokensPerSec.toFixed(0)} tok/s, ×${row.speedup.toFixed(2)}; CPU ms/token ${row.sequentialCpuMsPerToken.toFixed(3)} vs ${row.batchedCpuMsPerToken.toFixed(3)}; mean first-token ms ${row.sequentialMeanFirstTokenMs.toFixed(1)} vs ${row.batchedMeanFirstTokenMs.toFixed(1)}; load ${os.loadavg()[0]!.toFixed(2)}; max |Δlogit| ${maxAbsLogitDiff.toExponential(1)}\n`,
  );
}

const report = { date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), threads, dtype: args.dtype, reps, padding, promptLengths: [minLen, maxLen], node: process.version, loadAvg: os.loadavg(), rows };
fs.mkdirSync(path.dirname(args.out), { recursive: true });
fs.writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');
console.log(`| model | prompts: tokens (padded, runs) | sequential tok/s | batched tok/s | speedup | CPU ms/token seq / batched | mean first-token ms seq / batched |`);
console.log(`|---|---|---|---|---|---|---|`);
for (const r of rows) {
  console.log(
    `| ${r.model} | ${r.prompts}: ${r.tokens} (${r.paddedTokens}, ${r.batchRuns} runs) | ${r.sequentialTokensPerSec.toFixed(0)} | ${r.batchedTokensPerSec.toFixed(0)} | ×${r.speedup.toFixed(2)} | ${r.sequentialCpuMsPerToken.toFixed(3)} / ${r.batchedCpuMsPerToken.toFixed(3)} | ${r.sequentialMeanFirstTokenMs.toFixed(1)} / ${r.batchedMeanFirstTokenMs.toFixed(1)} |`,
  );
}
process.stderr.write(`wrote ${args.out}\n`);
