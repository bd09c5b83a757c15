/**
 * How long a prompt-scoring request (`echo` + `logprobs`, what evaluation harnesses send) holds up
 * the token stream of another request on the same variant. The real server runs in this process
 * on 127.0.0.1; one client streams a completion while another asks for the log-probabilities of
 * a long prompt, and the stream's gaps between tokens are measured before and while the scoring
 * runs. The scoring session runs the prompt in pieces of `--prefill-chunk` tokens (the
 * scheduler's own budget) with decode steps between them; `--chunks` compares piece sizes (a
 * size at least the prompt's length is the old behaviour: the whole prompt in one run).
 *
 *   node --import tsx scripts/experiments/bench-scoring-stall.ts [--model 100m|bundled] [--prompt-tokens 1024]
 *     [--chunks 4096,256,64] [--rounds 3] [--threads N] [--dtype float32|int8] [--out bench-out/scoring-stall.json]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseDtypeRequest } from '../../src/runtime/device/device.ts';
import { defaultServerConfig } from '../../src/server/config.ts';
import { startServer } from '../../src/server/main.ts';
import { isBenchModelName, loadBenchModel } from '../lib/bench-model.ts';
import { median } from '../lib/stats.ts';
import { parseScriptArgs } from '../lib/script-args.ts';
import { log } from '../lib/log.ts';
import { sseData } from '../lib/sse-data.ts';

const args = parseScriptArgs(import.meta.url, {
  model: { type: 'string', default: '100m' },
  'prompt-tokens': { type: 'string', default: '1024' },
  chunks: { type: 'string', default: '4096,256,64' },
  rounds: { type: 'string', default: '3' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  dtype: { type: 'string', default: 'float32' },
  out: { type: 'string', default: 'bench-out/scoring-stall.json' },
});
if (!isBenchModelName(args.model)) throw new Error(`--model: unknown model '${args.model}'`);
const promptTokens = Number(args['prompt-tokens']);
const chunks = args.chunks.split(',').map(Number);
const rounds = Number(args.rounds);
const threads = Number(args.threads);
const dtype = parseDtypeRequest(args.dtype);
if (dtype !== 'float32' && dtype !== 'int8' && dtype !== 'int4') throw new Error('--dtype: float32, int8 or int4 (CPU)');

const model = await loadBenchModel(args.model);
const context = Math.min(model.spec.maxContext, promptTokens + 128);
if (promptTokens + 1 > context) throw new Error(`--prompt-tokens ${promptTokens} does not fit the model's context of ${model.spec.maxContext}`);
// A fixed pseudo-random prompt of token ids (seeded), away from the special ids at the start of the vocabulary.
let seed = 12345;
const longPrompt = Array.from({ length: promptTokens }, () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return 3 + (seed % (model.spec.vocabSize - 3));
});
const streamPrompt = longPrompt.slice(0, 16);
const STREAM_TOKENS = 256;

/** Arrival times (ms) of a streamed completion's tokens; `onToken(n)` after the n-th. */
async function stream(url: string, onToken: (n: number) => void): Promise<number[]> {
  const res = await fetch(url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: streamPrompt, max_tokens: STREAM_TOKENS, temperature: 0, stream: true, ignore_eos: true }),
  });
  if (!res.ok || !res.body) throw new Error(`stream: ${res.status} ${await res.text()}`);
  const times: number[] = [];
  for await (const data of sseData(res.body)) {
    if (data === '[DONE]') continue;
    times.push(performance.now());
    onToken(times.length);
  }
  return times;
}

async function score(url: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: longPrompt, max_tokens: 0, echo: true, logprobs: 1 }),
  });
  const body = (await res.json()) as { choices?: { logprobs: { token_logprobs: (number | null)[] } }[] };
  if (!res.ok || body.choices?.[0]?.logprobs.token_logprobs.length !== promptTokens) throw new Error(`score: ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
  return performance.now() - t0;
}

const gapsOf = (times: number[], from: number, to: number) => times.slice(1).map((t, i) => ({ at: times[i]!, gap: t - times[i]! })).filter((g) => g.at >= from && g.at < to).map((g) => g.gap);

interface Row {
  chunk: number;
  round: number;
  /** Gaps between streamed tokens before the scoring request (ms). */
  quietP50: number;
  quietMax: number;
  /** Gaps while the scoring request was in flight (ms). */
  duringP50: number;
  duringMax: number;
  /** The scoring request's own latency (ms). */
  scoreMs: number;
}

const rows: Row[] = [];
for (const chunk of chunks) {
  const server = await startServer(
    { ...defaultServerConfig, host: '127.0.0.1', port: 0, maxBatch: 2, context, threads, prefillChunk: chunk, requestTimeoutMs: 0, servedModelName: args.model, device: 'cpu', dtype: dtype === 'float32' ? 'float32' : dtype, shutdownGraceMs: 5000 },
    { model, log: () => undefined },
  );
  try {
    await score(server.url); // builds the scoring session (first use), outside the measurement
    for (let round = 1; round <= rounds; round++) {
      let scoring: Promise<{ start: number; end: number; ms: number }> | undefined;
      const times = await stream(server.url, (n) => {
        if (n !== 64) return;
        const start = performance.now();
        scoring = score(server.url).then((ms) => ({ start, end: performance.now(), ms }));
      });
      const s = await scoring!;
      if (times.at(-1)! < s.end) log(`warning: chunk ${chunk} round ${round}: the stream ended before the scoring did; raise the stream length`);
      const quiet = gapsOf(times, times[8]!, s.start);
      const during = gapsOf(times, s.start, s.end);
      const row: Row = { chunk, round, quietP50: median(quiet), quietMax: Math.max(...quiet), duringP50: median(during), duringMax: Math.max(...during), scoreMs: s.ms };
      rows.push(row);
      log(`chunk ${chunk} round ${round}: stream gaps before p50 ${row.quietP50.toFixed(1)} ms max ${row.quietMax.toFixed(1)}; while scoring ${promptTokens} tokens p50 ${row.duringP50.toFixed(1)} max ${row.duringMax.toFixed(1)} ms; scoring took ${row.scoreMs.toFixed(0)} ms`);
    }
  } finally {
    await server.close();
  }
}

const report = { date: new Date().toISOString(), command: `node --import tsx scripts/experiments/bench-scoring-stall.ts ${process.argv.slice(2).join(' ')}`.trim(), model: args.model, dtype, promptTokens, threads, machine: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), loadAvg: os.loadavg() }, rows };
fs.mkdirSync(path.dirname(args.out), { recursive: true });
fs.writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');
console.log('| scoring piece (tokens) | stream gap before, p50 / max ms | while scoring, p50 / max ms | scoring latency ms |');
console.log('|---|---|---|---|');
for (const c of chunks) {
  const r = rows.filter((x) => x.chunk === c);
  const med = (f: (x: Row) => number) => median(r.map(f)).toFixed(0);
  const worst = (f: (x: Row) => number) => Math.max(...r.map(f)).toFixed(0);
  console.log(`| ${c >= promptTokens ? `${c} (whole prompt)` : c} | ${med((x) => x.quietP50)} / ${worst((x) => x.quietMax)} | ${med((x) => x.duringP50)} / ${worst((x) => x.duringMax)} | ${med((x) => x.scoreMs)} |`);
}
log(`wrote ${args.out}`);
