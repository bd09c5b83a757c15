/**
 * The llama.cpp peer: the same dense model exported to GGUF (F32, or Q8_0 / Q4_0 as llama.cpp's
 * users run it on a CPU) and run by llama.cpp through the `node-llama-cpp` package, beside our
 * ModelSession at the same quantization (Q8_0 ↔ --dtype int8, Q4_0 ↔ int4: the very same blocks,
 * see src/runtime/model/block-quantization.ts), on the same CPU with the same thread count, prompt length and
 * number of generated tokens (greedy, batch 1).
 *
 * node-llama-cpp is NOT a dependency of this project: scripts/lib/node-llama-cpp.ts installs it on
 * demand into an ignored side folder (default `.peer/`) and loads its prebuilt CPU binary.
 *
 * Both engines are timed the same way: a generation of `tokens` tokens from a `promptTokens`-token
 * prompt; prompt time = until the first generated token (prefill + one sample), decode time = the
 * next `tokens` single-token steps. Repetitions alternate between the engines (ours, llama.cpp,
 * ours, ...) so background load on a shared machine hits both alike; the best repetition and the
 * median are reported.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import type { ExecutionTarget } from '../../src/runtime/device/device.ts';
import { parseGguf, tensorByteSize } from '../../src/runtime/model/gguf-container.ts';
import { readGguf } from '../../src/runtime/model/gguf-model.ts';
import { type GgufWriteDtype, writeGguf } from '../../src/runtime/model/gguf-writer.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import { parameterCounts } from '../../src/runtime/model/spec.ts';
import { argmax } from './decode-profile.ts';
import { median, sum } from '../lib/stats.ts';
import type { NlcContext, NlcLlama, NlcModel, NlcSequence } from '../lib/node-llama-cpp.ts';

export { binaryPackage, ensurePeer, loadPeer, PEER_VERSION, peerEntry } from '../lib/node-llama-cpp.ts';

/** One timed generation. */
export interface GenTiming {
  promptMs: number;
  decodeMs: number;
  /** Generated tokens after the first (decode steps timed). */
  decodeTokens: number;
  promptTokensPerSec: number;
  decodeTokensPerSec: number;
  /** Median single decode step (ms). */
  medianStepMs: number;
}

export interface EngineResult {
  /** Best repetition (highest decode tokens/s): the least disturbed by other load. */
  best: GenTiming;
  /** Median over repetitions of decode tokens/s and prompt tokens/s. */
  medianDecodeTokensPerSec: number;
  medianPromptTokensPerSec: number;
  reps: GenTiming[];
}

/** Both engines at one thread count. */
export interface PeerRun {
  threads: number;
  ours: EngineResult | null;
  llamacpp: EngineResult | null;
  /** 1-minute load average before and after (other processes on a shared machine). */
  loadAvg: [number, number];
}

/** Weight storage of one peer comparison: the GGUF type llama.cpp runs and ours beside it. */
export type PeerQuant = Extract<GgufWriteDtype, 'f32' | 'q8_0' | 'q4_0'>;
export const peerQuants: readonly PeerQuant[] = ['f32', 'q8_0', 'q4_0'];

/** Our engine's target at a peer quantization: Q8_0 → int8 blocks, Q4_0 → int4, F32 → float32. */
export function oursTarget(quant: PeerQuant): ExecutionTarget {
  return quant === 'f32' ? { device: 'cpu', dtype: 'float32' } : { device: 'cpu', dtype: 'float32', weights: quant === 'q8_0' ? 'int8' : 'int4' };
}

export interface PeerModelResult {
  model: string;
  /** A pruned variant of the dense model of this name (MoP at `target`, exported as any pruned shape is). */
  prunedFrom?: { model: string; target: number };
  /** Absent in reports written before quantized peers: F32. */
  quant?: PeerQuant;
  params: { total: number; blocks: number };
  /** readBytes: the tensor bytes one decode step reads (all but the token embedding, unless it is the tied head). */
  gguf: { path: string; bytes: number; dtype: PeerQuant; readBytes?: number } | null;
  runs: PeerRun[];
  /** Why llama.cpp (or ours) did not run for this model. */
  error: string | null;
}

export interface PeerReport {
  version: 1;
  date: string;
  available: boolean;
  /** Why the peer could not run at all (not installed, no prebuilt binary for this platform, ...). */
  reason: string | null;
  peer: { package: string; version: string; binary: string; llamaCppRelease: string | null; systemInfo: string | null } | null;
  machine: { cpu: string; cores: number; node: string };
  /** Thread counts measured; the first is the headline (all cores). */
  threads: number[];
  /** Whether our session's idle pool threads spun (the server's --ort-spin); absent in older reports: off. */
  ortSpin?: boolean;
  promptTokens: number;
  tokens: number;
  reps: number;
  models: PeerModelResult[];
  /** Pruned variants (bench-llamacpp --pruned), each with its dense model of the same run and weights; absent in older reports. */
  pruned?: PrunedPeerPair[];
}

/** A pruned file and the dense one it was measured beside (same run, weights and thread counts). */
export interface PrunedPeerPair {
  dense: PeerModelResult;
  pruned: PeerModelResult;
}

/** Fixed prompt token ids (same for both engines): BOS then ids spread over the vocabulary. */
export function peerPrompt(vocab: number, length: number, bos: number): number[] {
  const lo = Math.min(3 + 256, Math.max(3, vocab - 1));
  const span = Math.max(1, vocab - lo);
  return [bos, ...Array.from({ length: length - 1 }, (_, k) => lo + ((k * 104729 + 7919) % span))];
}

function timing(promptTokens: number, stepsMs: number[], promptMs: number): GenTiming {
  const decodeMs = sum(stepsMs);
  return {
    promptMs,
    decodeMs,
    decodeTokens: stepsMs.length,
    promptTokensPerSec: (promptTokens / promptMs) * 1000,
    decodeTokensPerSec: (stepsMs.length / decodeMs) * 1000,
    medianStepMs: median(stepsMs),
  };
}

/** Our engine: ModelSession prefill, then `tokens` greedy decode steps. */
export async function oursOnce(session: ModelSession, prompt: number[], tokens: number): Promise<GenTiming> {
  session.reset(0);
  const t0 = performance.now();
  let next = argmax(await session.prefill(0, prompt));
  const promptMs = performance.now() - t0;
  const steps: number[] = [];
  for (let i = 0; i < tokens; i++) {
    const s = performance.now();
    const [logits] = await session.decode([{ slot: 0, token: next }]);
    next = argmax(logits!);
    steps.push(performance.now() - s);
  }
  return timing(prompt.length, steps, promptMs);
}

/** llama.cpp: one sequence, evaluate(prompt) yields the first token after the prompt, then one per step. */
export async function llamaOnce(seq: NlcSequence, prompt: number[], tokens: number): Promise<GenTiming> {
  await seq.clearHistory();
  const t0 = performance.now();
  let promptMs = 0;
  let last = t0;
  const steps: number[] = [];
  let n = 0;
  for await (const _token of seq.evaluate(prompt, { temperature: 0 })) {
    const now = performance.now();
    if (n === 0) promptMs = now - t0;
    else steps.push(now - last);
    last = now;
    if (++n > tokens) break;
  }
  return timing(prompt.length, steps, promptMs);
}

export function summarizeEngine(reps: GenTiming[]): EngineResult {
  const best = reps.reduce((a, b) => (b.decodeTokensPerSec > a.decodeTokensPerSec ? b : a));
  return { best, medianDecodeTokensPerSec: median(reps.map((r) => r.decodeTokensPerSec)), medianPromptTokensPerSec: median(reps.map((r) => r.promptTokensPerSec)), reps };
}

/** Bytes of the tensors a decode step reads in a GGUF file: every one but the token embedding (a row gather), unless it doubles as the LM head. */
export function decodeReadBytes(file: string): number {
  const g = parseGguf(new Uint8Array(fs.readFileSync(file)), file);
  const tied = !g.tensors.has('output.weight');
  return [...g.tensors.values()].reduce((n, t) => (t.name === 'token_embd.weight' && !tied ? n : n + tensorByteSize(g, t)), 0);
}

export interface PeerModelOptions {
  name: string;
  /** Set for a pruned variant: the dense model it was pruned from, and the target. */
  prunedFrom?: { model: string; target: number };
  /**
   * Ours runs the GGUF file read back (its Q8_0 / Q4_0 blocks as they are): the very weights
   * llama.cpp runs, pruned widths padded to whole blocks as the file holds them.
   */
  oursFromFile?: boolean;
  quant: PeerQuant;
  model: LoadedModel;
  ggufDir: string;
  threads: number[];
  /** Our session's idle pool threads spin (llama.cpp's threads always do). */
  spin: boolean;
  promptTokens: number;
  tokens: number;
  reps: number;
  /** Keep both engines loaded and alternate repetitions (false: ours first, released, then llama.cpp: less memory). */
  interleave: boolean;
  llama: NlcLlama | null;
  log: (line: string) => void;
}

/** Export to GGUF once, then time both engines at each thread count. */
export async function benchModel(o: PeerModelOptions): Promise<PeerModelResult> {
  const { spec, weights, tokenizer } = o.model;
  const counts = parameterCounts(spec);
  const result: PeerModelResult = { model: o.name, ...(o.prunedFrom && { prunedFrom: o.prunedFrom }), quant: o.quant, params: { total: counts.total, blocks: counts.blocks }, gguf: null, runs: [], error: null };
  let file: string | undefined;
  if (o.llama) {
    try {
      fs.mkdirSync(o.ggufDir, { recursive: true });
      file = path.join(o.ggufDir, `${o.name}.${o.quant}.gguf`);
      o.log(`${o.name}: writing ${file}`);
      await writeGguf({ spec, weights }, file, { dtype: o.quant, tokenizer, name: `mop-bench-${o.name}` });
      result.gguf = { path: file, bytes: fs.statSync(file).size, dtype: o.quant, readBytes: decodeReadBytes(file) };
    } catch (e) {
      result.error = `GGUF export: ${e instanceof Error ? e.message : String(e)}`;
      file = undefined;
    }
  }
  const ours: OursModel = o.oursFromFile && file ? await readGguf(file) : o.model;
  for (const threads of o.threads) {
    const run = await benchThreads(o, ours, threads, file, (e) => (result.error ??= e));
    result.runs.push(run);
    const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));
    o.log(
      `${o.name} ${o.quant}, ${threads} thread(s): decode tok/s ours ${f(run.ours?.best.decodeTokensPerSec)} (median ${f(run.ours?.medianDecodeTokensPerSec)}), ` +
        `llama.cpp ${f(run.llamacpp?.best.decodeTokensPerSec)} (median ${f(run.llamacpp?.medianDecodeTokensPerSec)}); load ${run.loadAvg.map((x) => x.toFixed(2)).join(' → ')}`,
    );
  }
  return result;
}

/** What our engine runs: a model, with the checkpoint's own quantized blocks when read from a GGUF. */
type OursModel = Pick<LoadedModel, 'spec' | 'weights' | 'fileBlocks'>;

async function benchThreads(o: PeerModelOptions, model: OursModel, threads: number, file: string | undefined, onError: (e: string) => void): Promise<PeerRun> {
  const { spec, weights } = model;
  const load0 = os.loadavg()[0]!;
  const prompt = peerPrompt(spec.vocabSize, o.promptTokens, spec.bosTokenId);
  const contextSize = o.promptTokens + o.tokens + 16;
  const ours: GenTiming[] = [];
  const theirs: GenTiming[] = [];
  let session: ModelSession | undefined;
  try {
    session = await ModelSession.create(spec, weights, { maxBatch: 1, maxContext: Math.min(contextSize, spec.maxContext), threads, target: oursTarget(o.quant), spin: o.spin, ...(model.fileBlocks && { fileBlocks: model.fileBlocks }) });
  } catch (e) {
    // e.g. int4 on a width that is not whole blocks: llama.cpp still runs (its file pads such widths).
    const msg = `ours at ${o.quant}: ${e instanceof Error ? e.message : String(e)}`;
    onError(msg);
    o.log(`${o.name}: ${msg}`);
  }
  const runOurs = async (count: boolean) => {
    const t = await oursOnce(session!, prompt, o.tokens);
    if (count) ours.push(t);
  };
  let lmodel: NlcModel | undefined;
  let ctx: NlcContext | undefined;
  try {
    if (session) await runOurs(false); // warm-up
    if (o.llama && file) {
      if (!o.interleave && session) {
        for (let r = 0; r < o.reps; r++) await runOurs(true);
        await session.release();
        session = undefined;
      }
      try {
        lmodel = await o.llama.loadModel({ modelPath: file, gpuLayers: 0 });
        ctx = await lmodel.createContext({ contextSize, batchSize: Math.max(o.promptTokens, 32), threads, sequences: 1, flashAttention: false });
        const seq = ctx.getSequence();
        await llamaOnce(seq, prompt, o.tokens); // warm-up (pages in the mmapped weights)
        for (let r = 0; r < o.reps; r++) {
          if (o.interleave && session) await runOurs(true);
          theirs.push(await llamaOnce(seq, prompt, o.tokens));
        }
      } catch (e) {
        const msg = `llama.cpp: ${e instanceof Error ? e.message : String(e)}`;
        onError(msg);
        o.log(`${o.name}: ${msg}`);
      }
    }
    if (session) while (ours.length < o.reps) await runOurs(true);
  } finally {
    await ctx?.dispose().catch(() => undefined);
    await lmodel?.dispose().catch(() => undefined);
    await session?.release();
  }
  return {
    threads,
    ours: ours.length ? summarizeEngine(ours) : null,
    llamacpp: theirs.length ? summarizeEngine(theirs) : null,
    loadAvg: [load0, os.loadavg()[0]!],
  };
}
