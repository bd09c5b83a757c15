/**
 * The llama.cpp peer: decode (and prompt) tokens/s at batch 1 of the same dense model, run by our
 * engine (ModelSession) and by llama.cpp through node-llama-cpp (installed on demand into `.peer/`,
 * never a dependency of this project), on the same CPU with the same thread count. Writes JSON
 * that `bench-speedup` reads to fill its llama.cpp row; when the peer cannot run, the JSON says why
 * (`available: false`, `reason`) and the exit status is still 0.
 *
 *   node --import tsx scripts/bench-llamacpp.ts [--models bundled,100m] [--quants f32,q8_0] [--threads N,1]
 *        [--prompt-tokens 32] [--tokens 64] [--reps 5] [--peer-dir .peer] [--peer-version 3.22.1]
 *        [--gguf-dir bench-out/speedup] [--no-install] [--ort-spin on|off] [--pruned 0.4|none]
 *        [--prune-samples 8] [--prune-seq-len 64]
 *        [--out bench-out/speedup/llamacpp.json]
 *
 * Models: `bundled` (stories260K), `100m`, `1b`, `tinyllama-1b` (synthetic, same seed as
 * bench-speedup, so the same weights); the GGUF files are written under --gguf-dir, one per
 * quantization: f32, q8_0 (ours: --dtype int8, the same blocks) and q4_0 (ours: int4). Threads:
 * llama.cpp's users pin them; the default measures all cores and 1. --ort-spin on lets our idle
 * pool threads spin as llama.cpp's do (the server's --ort-spin; default off, as the server).
 * --pruned R (default 0.4): each model is also pruned with MoP to R (float32 passes on
 * --prune-samples × --prune-seq-len calibration tokens, no recovery: the shapes, not the weights'
 * quality, set the speed), exported to
 * GGUF like any pruned model (`deci` with per-layer shapes, widths padded to whole blocks), and both
 * engines run that file beside the dense one: the pruned / dense decode-time ratio of llama.cpp next
 * to ours and to the ratio of weight bytes a step reads (report.pruned).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchModel, ensurePeer, loadPeer, PEER_VERSION, type PeerQuant, peerQuants, type PeerReport, peerEntry } from './speedup/llamacpp-peer.ts';
import { approxServedBytes, isBenchModelName, loadBenchModel } from './lib/bench-model.ts';
import { parseScriptArgs } from './lib/script-args.ts';
import { intOption, listOption, numberOption, onOffOption } from './lib/option-values.ts';
import { runMop } from '../src/mop/mop.ts';
import { loadCalibration } from '../src/mop/calibration.ts';
import type { LoadedModel } from '../src/runtime/model/loaded-model.ts';
import { createTokenizer } from '../src/runtime/tokenizer/create.ts';

const args = parseScriptArgs(import.meta.url, {
  models: { type: 'string', default: 'bundled,100m' },
  quants: { type: 'string', default: 'f32,q8_0' },
  threads: { type: 'string', default: os.availableParallelism() > 1 ? `${os.availableParallelism()},1` : '1' },
  'prompt-tokens': { type: 'string', default: '32' },
  tokens: { type: 'string', default: '64' },
  reps: { type: 'string', default: '5' },
  'peer-dir': { type: 'string', default: '.peer' },
  'peer-version': { type: 'string', default: PEER_VERSION },
  'gguf-dir': { type: 'string', default: 'bench-out/speedup' },
  'no-install': { type: 'boolean', default: false },
  'ort-spin': { type: 'string', default: 'off' },
  pruned: { type: 'string', default: '0.4' },
  'prune-samples': { type: 'string', default: '8' },
  'prune-seq-len': { type: 'string', default: '64' },
  out: { type: 'string', default: 'bench-out/speedup/llamacpp.json' },
});

const log = (line: string) => process.stderr.write(`[llama.cpp peer] ${line}\n`);
const threads = listOption(args.threads).map((t) => intOption('threads', t, 1, 256));
const promptTokens = intOption('prompt-tokens', args['prompt-tokens'], 2, 1024);
const tokens = intOption('tokens', args.tokens, 2, 1024);
const reps = intOption('reps', args.reps, 1, 20);
const ortSpin = onOffOption('ort-spin', args['ort-spin']);
const models = listOption(args.models);
for (const m of models) if (!isBenchModelName(m)) throw new Error(`unknown model '${m}'`);
const prunedTarget = args.pruned === 'none' ? undefined : numberOption('pruned', args.pruned, (n) => n > 0 && n <= 0.9);
const calibrationSize = { samples: intOption('prune-samples', args['prune-samples'], 1, 1024), seqLen: intOption('prune-seq-len', args['prune-seq-len'], 2, 4096) };
const quants = listOption(args.quants.toLowerCase()) as PeerQuant[];
for (const q of quants) if (!peerQuants.includes(q)) throw new Error(`--quants: unknown '${q}' (${peerQuants.join(', ')})`);

const report: PeerReport = {
  version: 1,
  date: new Date().toISOString(),
  available: false,
  reason: null,
  peer: null,
  machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), node: process.version },
  threads,
  ortSpin,
  promptTokens,
  tokens,
  reps,
  models: [],
  ...(prunedTarget !== undefined && { pruned: [] }),
};

let llama: Awaited<ReturnType<typeof loadPeer>> | null = null;
try {
  const entry = args['no-install'] ? peerEntry(args['peer-dir']) : ensurePeer(args['peer-dir'], args['peer-version'], log);
  if (!fs.existsSync(entry)) throw new Error(`node-llama-cpp is not installed in ${args['peer-dir']} (and --no-install was given)`);
  llama = await loadPeer(entry, Math.max(...threads));
  report.available = true;
  report.peer = {
    package: 'node-llama-cpp',
    version: JSON.parse(fs.readFileSync(path.resolve(path.dirname(entry), '..', 'package.json'), 'utf8')).version as string,
    binary: llama.buildType,
    llamaCppRelease: llama.llamaCppRelease ? `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}` : null,
    systemInfo: llama.systemInfo?.trim() ?? null,
  };
  log(`node-llama-cpp ${report.peer.version} (${report.peer.binary} binary, ${report.peer.llamaCppRelease}); threads ${threads.join(', ')}`);
} catch (e) {
  report.reason = e instanceof Error ? e.message : String(e);
  log(`the peer cannot run: ${report.reason}; timing our engine alone`);
}

for (const name of models) {
  if (!isBenchModelName(name)) continue;
  if (name === '1b') log('1b: ~4.4 GB of f32 weights, held by each engine in turn and written as a 4.4 GB GGUF; this takes minutes');
  log(`${name}: building the model`);
  const model = await loadBenchModel(name);
  const common = { ggufDir: args['gguf-dir'], threads, spin: ortSpin, promptTokens, tokens, reps, interleave: approxServedBytes(name) < 4e9, llama, log };
  for (const quant of quants) report.models.push(await benchModel({ ...common, name, quant, model }));
  if (prunedTarget === undefined) continue;
  const pruned = await pruneForPeer(model, prunedTarget, calibrationSize, log);
  const variant = `${name}-mop-${Math.round(prunedTarget * 100)}`;
  for (const quant of quants) {
    const dense = report.models.find((m) => m.model === name && m.quant === quant)!;
    report.pruned!.push({ dense, pruned: await benchModel({ ...common, name: variant, quant, model: pruned, prunedFrom: { model: name, target: prunedTarget }, oursFromFile: true }) });
  }
}
await llama?.dispose().catch(() => undefined);

fs.mkdirSync(path.dirname(args.out), { recursive: true });
fs.writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');
log(`written ${args.out}`);

/** MoP at `target` on a small calibration set, no recovery (the pruned shapes set the speed). */
async function pruneForPeer(model: LoadedModel, target: number, size: { samples: number; seqLen: number }, log: (line: string) => void): Promise<LoadedModel> {
  const started = performance.now();
  const calibration = await loadCalibration(createTokenizer(model.tokenizer), { ...size, seed: 1 });
  const { model: pruned, report } = await runMop(model, { target, calibration });
  log(`MoP ${target}: ratio ${report.result.ratio.toFixed(3)}, layers ${pruned.spec.layers.map((l) => `${l.heads}/${l.kvHeads}/${l.ffn}`).join(' ')} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  return { ...model, spec: pruned.spec, weights: pruned.weights };
}
