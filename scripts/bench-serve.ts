/**
 * Serving throughput over real HTTP: the server runs in this process on 127.0.0.1:0, and C client
 * workers (C = 1, 4, 16) send streaming /v1/completions requests back to back, each generating
 * exactly --max-tokens tokens (ignore_eos), until --rounds × C requests or --seconds have passed.
 * Reports requests/s, generated tokens/s, mean time to first token and p50/p95 latency, as a
 * Markdown table and JSON.
 *
 * Models: `bundled` (stories260K, text prompts) and `100m`, a ~100M-parameter synthetic model of
 * LLaMA proportions (random weights, a made-up vocabulary; prompts are sent as token ids).
 *
 *   npm run bench:serve -- [--models bundled,100m] [--concurrency 1,4,16] [--max-tokens 64]
 *                          [--prompt-tokens 32] [--rounds 20] [--seconds 10] [--threads N] [--out bench-out/serve.json]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultServerConfig, type ServerConfig } from '../src/server/config.ts';
import { type RunningServer, startServer } from '../src/server/main.ts';
import { loadBenchModel } from './lib/bench-model.ts';
import { mean, quantile } from './lib/stats.ts';
import { parseScriptArgs } from './lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, {
  models: { type: 'string', default: 'bundled,100m' },
  concurrency: { type: 'string', default: '1,4,16' },
  'max-tokens': { type: 'string', default: '64' },
  'prompt-tokens': { type: 'string', default: '32' },
  rounds: { type: 'string', default: '20' },
  seconds: { type: 'string', default: '10' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  out: { type: 'string', default: 'bench-out/serve.json' },
});
const levels = args.concurrency.split(',').map(Number);
const maxTokens = Number(args['max-tokens']);
const promptTokens = Number(args['prompt-tokens']);
const rounds = Number(args.rounds);
const seconds = Number(args.seconds);
const threads = Number(args.threads);
const maxBatch = Math.max(...levels);
// Room for prompt + generation, and not more: the KV cache is allocated for slots × context.
const context = promptTokens + maxTokens + 8;

interface Row {
  model: string;
  params: number;
  concurrency: number;
  requests: number;
  seconds: number;
  requestsPerSec: number;
  tokensPerSec: number;
  meanTtftMs: number;
  p50LatencyMs: number;
  p95LatencyMs: number;
}


async function start(name: string): Promise<RunningServer> {
  const config: ServerConfig = { ...defaultServerConfig, host: '127.0.0.1', port: 0, maxBatch, maxQueue: 4 * maxBatch, context, threads, requestTimeoutMs: 0 };
  const log = (line: string) => process.stderr.write(`  [${name}] ${line}\n`);
  if (name === 'bundled') return startServer(config, { log });
  return startServer({ ...config, servedModelName: `synthetic-${name}` }, { log, model: await loadBenchModel(name) });
}

/** A prompt of about `promptTokens` tokens: text for the bundled model, ids for synthetic ones. */
function prompt(name: string, i: number, vocab: number): string | number[] {
  if (name === 'bundled') return `Once upon a time, in a town near the sea, there lived a girl number ${i} who loved to`;
  return [1, ...Array.from({ length: promptTokens - 1 }, (_, k) => 3 + 256 + ((i * 7919 + k * 104729) % (vocab - 259)))];
}

interface Sample {
  ttftMs: number;
  latencyMs: number;
  tokens: number;
}

/** One streaming request; returns when [DONE] arrives. */
async function request(url: string, body: unknown): Promise<Sample> {
  const t0 = performance.now();
  const res = await fetch(url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttft = 0;
  let tokens = 0;
  let buf = '';
  for await (const part of res.body!.pipeThrough(new TextDecoderStream())) {
    if (!ttft) ttft = performance.now() - t0;
    buf += part;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const data = buf.slice(6, end);
      buf = buf.slice(end + 2);
      if (data === '[DONE]') continue;
      const chunk = JSON.parse(data) as { usage?: { completion_tokens: number } | null };
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
  }
  return { ttftMs: ttft, latencyMs: performance.now() - t0, tokens };
}


const rows: Row[] = [];
for (const name of args.models.split(',')) {
  process.stderr.write(`${name}: starting the server\n`);
  const server = await start(name);
  const variant = server.service.active!;
  const vocab = variant.tokenizer.vocabSize;
  const body = (i: number) => ({ prompt: prompt(name, i, vocab), max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
  await request(server.url, body(0)); // warm-up
  for (const c of levels) {
    const budget = rounds * c;
    const deadline = performance.now() + seconds * 1000;
    let issued = 0;
    const samples: Sample[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: c }, async () => {
        while (issued < budget && performance.now() < deadline) {
          const i = issued++;
          samples.push(await request(server.url, body(i)));
        }
      }),
    );
    const wall = (performance.now() - t0) / 1000;
    const tokens = samples.reduce((a, s) => a + s.tokens, 0);
    const row: Row = {
      model: name,
      params: variant.parameters,
      concurrency: c,
      requests: samples.length,
      seconds: wall,
      requestsPerSec: samples.length / wall,
      tokensPerSec: tokens / wall,
      meanTtftMs: mean(samples.map((s) => s.ttftMs)),
      p50LatencyMs: quantile(samples.map((s) => s.latencyMs), 0.5),
      p95LatencyMs: quantile(samples.map((s) => s.latencyMs), 0.95),
    };
    rows.push(row);
    process.stderr.write(`  concurrency ${c}: ${row.requests} requests in ${wall.toFixed(1)} s, ${row.requestsPerSec.toFixed(2)} req/s, ${row.tokensPerSec.toFixed(1)} tok/s\n`);
  }
  await server.close();
}

const header = [
  `Serving benchmark: ${os.cpus()[0]?.model ?? 'cpu'} (${os.availableParallelism()} cores), ${threads} ORT threads, node ${process.version}; ` +
    `streaming /v1/completions, ~${promptTokens}-token prompts, ${maxTokens} generated tokens each (ignore_eos), max batch ${maxBatch}.`,
  '',
  '| model | params | concurrency | requests | req/s | gen tok/s | mean TTFT ms | p50 latency ms | p95 latency ms |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
];
const table = [
  ...header,
  ...rows.map(
    (r) =>
      `| ${r.model} | ${(r.params / 1e6).toFixed(2)}M | ${r.concurrency} | ${r.requests} | ${r.requestsPerSec.toFixed(2)} | ${r.tokensPerSec.toFixed(1)} | ${r.meanTtftMs.toFixed(1)} | ${r.p50LatencyMs.toFixed(0)} | ${r.p95LatencyMs.toFixed(0)} |`,
  ),
].join('\n');
const report = { date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), threads, node: process.version, maxTokens, promptTokens, maxBatch, rows };
fs.mkdirSync(path.dirname(args.out), { recursive: true });
fs.writeFileSync(args.out, JSON.stringify(report, null, 2));
fs.writeFileSync(args.out.replace(/\.json$/, '') + '.md', table + '\n');
console.log(table);
console.log(`\nwritten ${args.out}`);
