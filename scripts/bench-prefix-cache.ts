/**
 * Prefix caching: time to first token of requests that share a long system prompt, with the
 * engine's prefix cache on and off, and whether greedy outputs are the same both ways. Each
 * request is the shared system prompt (--system tokens) plus a suffix of its own (--suffix
 * tokens), sent one at a time to a continuous-batching scheduler (the engine a served variant
 * runs, without HTTP) over the ~100M-parameter synthetic model with int8 weights; TTFT is
 * submission to the first generated token. With the cache on, the first request fills it and is
 * left out of the figures, as is a warm-up request in each mode.
 *
 *   npm run bench:prefix-cache -- [--model 100m] [--dtype int8] [--system 512] [--suffix 24]
 *     [--requests 10] [--tokens 16] [--threads N] [--prefill-chunk 256] [--cache-mb 256]
 *     [--out bench-out/prefix-cache.json] [--report docs/prefix-cache-report.md]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadBenchModel } from './lib/bench-model.ts';
import { intOption } from './lib/option-values.ts';
import { parseScriptArgs } from './lib/script-args.ts';
import { median, quantile } from './lib/stats.ts';
import { parseDtypeRequest } from '../src/runtime/device/device.ts';
import { ModelSession } from '../src/runtime/engine/ort-decoder-session.ts';
import { PREFIX_BLOCK_TOKENS, type PrefixCacheStats } from '../src/runtime/engine/prefix-cache.ts';
import { defaultSamplingParams } from '../src/runtime/engine/sampling-params.ts';
import { BatchScheduler } from '../src/runtime/engine/scheduler.ts';
import { parameterCounts } from '../src/runtime/model/spec.ts';
import { createTokenizer } from '../src/runtime/tokenizer/create.ts';

const args = parseScriptArgs(import.meta.url, {
  model: { type: 'string', default: '100m' },
  dtype: { type: 'string', default: 'int8' },
  system: { type: 'string', default: '512' },
  suffix: { type: 'string', default: '24' },
  requests: { type: 'string', default: '10' },
  tokens: { type: 'string', default: '16' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  'prefill-chunk': { type: 'string', default: '256' },
  'cache-mb': { type: 'string', default: '256' },
  out: { type: 'string', default: 'bench-out/prefix-cache.json' },
  report: { type: 'string', default: 'docs/prefix-cache-report.md' },
});
const dtype = parseDtypeRequest(args.dtype);
if (dtype !== 'float32' && dtype !== 'int8' && dtype !== 'int4') throw new Error(`--dtype: this benchmark runs on the CPU: float32, int8 or int4, not ${args.dtype}`);
const target = dtype === 'float32' ? { device: 'cpu' as const, dtype } : { device: 'cpu' as const, dtype: 'float32' as const, weights: dtype };
const systemLen = intOption('system', args.system);
const suffixLen = intOption('suffix', args.suffix);
const requests = intOption('requests', args.requests);
const maxTokens = intOption('tokens', args.tokens);
const threads = intOption('threads', args.threads);
const prefillChunk = intOption('prefill-chunk', args['prefill-chunk']);
const cacheMb = intOption('cache-mb', args['cache-mb']);

/** What one mode measured. */
interface ModeResult {
  prefixCacheMb: number;
  ttftMs: number[];
  p50: number;
  p90: number;
  outputs: number[][];
  cache: PrefixCacheStats | undefined;
}

const log = (line: string) => process.stderr.write(line + '\n');
const loaded = await loadBenchModel(args.model);
const { spec } = loaded;
const t0 = performance.now();
const maxContext = systemLen + suffixLen + maxTokens + 8;
const session = await ModelSession.create(spec, loaded.weights, { maxBatch: 4, maxContext, threads, target });
log(`${args.model}: ${(parameterCounts(spec).total / 1e6).toFixed(1)}M params, ${args.dtype} weights, session built in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${threads} threads`);
const tokenizer = createTokenizer(loaded.tokenizer);

// Fixed pseudo-random ids (no text needed): one shared system prompt, one suffix per request.
const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 1 + ((i * 7919 + seed * 104_729) % (spec.vocabSize - 1)));
const system = ids(systemLen, 1);
const prompts = Array.from({ length: requests + 2 }, (_, r) => [...system, ...ids(suffixLen, 100 + r)]);

/** Sequential requests: TTFT and greedy tokens of each; the first `skip` are warm-up. */
async function runMode(prefixCacheMb: number, skip: number): Promise<ModeResult> {
  for (let s = 0; s < session.maxBatch; s++) session.reset(s);
  const scheduler = new BatchScheduler(session, tokenizer, { maxQueue: 4, prefillChunk, requestTimeoutMs: 0, prefixCacheMb });
  const ttftMs: number[] = [];
  const outputs: number[][] = [];
  for (const [r, promptTokens] of prompts.slice(0, requests + skip).entries()) {
    const handle = scheduler.submit({ promptTokens, maxTokens, sampling: defaultSamplingParams({ temperature: 0 }), ignoreEos: true });
    const tokens: number[] = [];
    let first: number | undefined;
    for await (const e of handle.events) {
      if (e.type !== 'token') continue;
      first ??= performance.now() - handle.submittedAt;
      tokens.push(e.token);
    }
    if (r < skip) continue;
    ttftMs.push(first!);
    outputs.push(tokens);
  }
  const cache = scheduler.stats().prefixCache;
  const result = { prefixCacheMb, ttftMs, p50: median(ttftMs), p90: quantile(ttftMs, 0.9), outputs, cache };
  log(`prefix cache ${prefixCacheMb === 0 ? 'off' : `${prefixCacheMb} MiB`}: TTFT p50 ${result.p50.toFixed(1)} ms, p90 ${result.p90.toFixed(1)} ms over ${requests} requests${cache ? `; ${cache.hitTokens} of ${cache.queryTokens} prompt tokens reused, ${(cache.bytes / 2 ** 20).toFixed(1)} MiB cached` : ''}`);
  return result;
}

// Off first: a warm-up request; on: the warm-up request also fills the cache, the second one is
// the first hit and is measured like every later one.
const off = await runMode(0, 1);
const on = await runMode(cacheMb, 1);
await session.release();
const identical = off.outputs.every((o, i) => o.length === on.outputs[i]!.length && o.every((t, k) => t === on.outputs[i]![k]));
const speedup = off.p50 / on.p50;
const report = {
  date: new Date().toISOString(),
  cpu: os.cpus()[0]?.model,
  cores: os.availableParallelism(),
  loadAvg: os.loadavg(),
  node: process.version,
  model: args.model,
  params: parameterCounts(spec).total,
  dtype: args.dtype,
  threads,
  prefillChunk,
  blockTokens: PREFIX_BLOCK_TOKENS,
  systemTokens: systemLen,
  suffixTokens: suffixLen,
  requests,
  generatedTokens: maxTokens,
  off: { p50: off.p50, p90: off.p90, ttftMs: off.ttftMs },
  on: { p50: on.p50, p90: on.p90, ttftMs: on.ttftMs, cache: on.cache },
  speedup,
  identical,
};
fs.mkdirSync(path.dirname(args.out), { recursive: true });
fs.writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');
fs.mkdirSync(path.dirname(args.report), { recursive: true });
fs.writeFileSync(args.report, renderReport(report));
log(`TTFT p50 ${off.p50.toFixed(1)} → ${on.p50.toFixed(1)} ms (${speedup.toFixed(1)}× lower), greedy outputs ${identical ? 'identical' : 'DIFFERENT'}; written ${args.out} and ${args.report}`);
if (!identical) process.exitCode = 1;

function renderReport(r: typeof report): string {
  const ms = (x: number) => x.toFixed(1);
  const bytesPerToken = r.on.cache && r.on.cache.blocks > 0 ? r.on.cache.bytes / (r.on.cache.blocks * r.blockTokens) : undefined;
  return `# Prefix cache: time to first token with a shared system prompt

Written by \`npm run bench:prefix-cache\` (scripts/bench-prefix-cache.ts) on ${r.date.slice(0, 10)}; the
figures are from ${r.cpu ?? 'an unknown CPU'} (${r.cores} cores, load average ${r.loadAvg.map((x) => x.toFixed(1)).join(' ')}
at the end, shared with other work), Node ${r.node}. Re-run it to measure your machine.

## What was measured

${r.requests} requests, one at a time, each a shared system prompt of ${r.systemTokens} tokens plus ${r.suffixTokens}
tokens of its own, to the continuous-batching scheduler a served variant runs (no HTTP), over the
synthetic ${r.model} model (${(r.params / 1e6).toFixed(1)}M parameters, ${r.dtype} weights, ${r.threads} ONNX Runtime threads,
prefill chunk ${r.prefillChunk} as \`mop serve\`'s default). TTFT is submission to the first generated token;
${r.generatedTokens} tokens are generated greedily per request. Each mode starts with one warm-up request left
out of the figures; with the cache on, that request also fills the cache.

| prefix cache | TTFT p50 | TTFT p90 |
| --- | ---: | ---: |
| off (\`--prefix-cache-mb 0\`) | ${ms(r.off.p50)} ms | ${ms(r.off.p90)} ms |
| on | ${ms(r.on.p50)} ms | ${ms(r.on.p90)} ms |

**TTFT p50 ${r.speedup.toFixed(1)}× lower with the cache** (target: at least 5×). Greedy outputs
${r.identical ? 'are identical' : '**differ**'} with the cache on and off (${r.requests} requests × ${r.generatedTokens} tokens).
${r.on.cache ? `\nWith the cache on, ${r.on.cache.hitTokens} of ${r.on.cache.queryTokens} prompt tokens looked up were reused (the
warm-up request's are among those looked up); ${r.on.cache.blocks} blocks of ${r.blockTokens} tokens held ${(r.on.cache.bytes / 2 ** 20).toFixed(1)} MiB${bytesPerToken ? ` (${(bytesPerToken / 1024).toFixed(1)} KiB of KV per token)` : ''}.\n` : ''}
## Why it is faster, and what is not cached

A request whose prompt starts with whole cached blocks gets their KV copied into its slot and
prefills only the rest (here ${r.suffixTokens} tokens instead of ${r.systemTokens + r.suffixTokens}); the copy is a memory move of a
few MiB, small beside the prefill it replaces. Blocks are ${r.blockTokens} tokens, hashed chained over the
prefix, so only a shared start is reused, never equal text further in. The last prompt token is
always prefilled, since its logits give the first token. Greedy outputs match: the reused KV is
what the same positions computed for an earlier prompt, and the rest is prefilled after it at the
same positions, as a continuation.

The cache lives in each variant's engine worker and goes with it when the variant unloads; WebGPU
and \`cuda-native\` sessions keep their KV out of JavaScript's reach and run without it (a start-up
line says so). Budget: \`--prefix-cache-mb\` / \`MOP_PREFIX_CACHE_MB\` (least recently used blocks are
evicted); \`mop_prefix_cache_queries_total\` and \`mop_prefix_cache_hits_total\` count prompt tokens.
`;
}
