/**
 * The GPU check (run by scripts/gpu-check.sh, which also prints the GPU and driver): every figure
 * issue 7 asks of a GPU run, in one JSON file, written again after each part so a run cut short
 * still leaves what it measured.
 *
 *   node --import tsx scripts/gpu-check.ts --out FILE [--device auto] [--preset 1b] [--ratio 0.4]
 *     [--contexts 128,1024,4096] [--batches 1,8] [--steps 16] [--samples 8] [--seq-len 64]
 *     [--requests 8,16] [--max-tokens 32] [--bandwidth-gbs N] [--budget-s 420] [--cuda-addon FILE]
 *
 * Parts: (1) device resolution and what each GPU path reports; (1b) where the native CUDA decoder
 * loads, each of its kernels against the JavaScript reference; (2) logits parity of the bundled
 * stories260K on the device (float16 and float32) against the CPU in float32, teacher-forced over a
 * prompt and 32 greedy steps; (3) decode-step cost of a synthetic LLaMA-shaped model (`1b`: 16
 * layers × 2048, GQA 32/8, ffn 5632, vocab 32000, 0.85B parameters) at each context and batch,
 * with batch-1 decode as a fraction of the memory-bandwidth bound (weight bytes per token ÷
 * bandwidth); (4) MoP pruning of that model to --ratio with calibration passes on the device;
 * (5) dense vs pruned end-to-end latency through the real server at concurrency 1 and 8.
 * A part that would start past --budget-s is skipped and says so. `--device cpu --preset tiny`
 * rehearses the whole check in seconds on any machine (the test suite does).
 */
import fs from 'node:fs';
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import { runLoad } from '../loadtest/load-generator.ts';
import { defaultCalibrationPath, loadCalibration } from '../src/mop/calibration.ts';
import { runMop } from '../src/mop/mop.ts';
import { describeTarget, type ExecutionTarget, parseDeviceRequest } from '../src/runtime/device/device.ts';
import { systemProbe } from '../src/runtime/device/probe.ts';
import { resolveTarget } from '../src/runtime/device/resolve.ts';
import { loadCudaBinding } from '../src/runtime/cuda/native-binding.ts';
import { createDecoderSession } from '../src/runtime/engine/create-session.ts';
import type { DecoderSession } from '../src/runtime/engine/decoder-session.ts';
import { cacheOutputsOn, ModelSession } from '../src/runtime/engine/ort-decoder-session.ts';
import type { NativeCudaSession } from '../src/runtime/cuda/native-session.ts';
import { buildDecoderGraph, type DecoderGraph } from '../src/runtime/onnx/decoder-graph.ts';
import { defaultModelPath, loadModel } from '../src/runtime/model/load.ts';
import type { LoadedModel } from '../src/runtime/model/loaded-model.ts';
import { type ModelSpec, parameterCounts } from '../src/runtime/model/spec.ts';
import { syntheticPresets } from '../src/runtime/model/synthetic.ts';
import { createTokenizer } from '../src/runtime/tokenizer/create.ts';
import { runKernelChecks } from './cuda/kernel-check.ts';
import { startBenchServer } from './speedup/serve.ts';
import { loadBenchModel } from './lib/bench-model.ts';
import { median } from './lib/stats.ts';
import { parseScriptArgs } from './lib/script-args.ts';
import { isPositiveInt, numberListOption } from './lib/option-values.ts';

const started = performance.now();
const args = parseScriptArgs(import.meta.url, {
  out: { type: 'string', default: 'gpu-check.json' },
  device: { type: 'string', default: 'auto' },
  'cuda-addon': { type: 'string' },
  preset: { type: 'string', default: '1b' },
  ratio: { type: 'string', default: '0.4' },
  contexts: { type: 'string', default: '128,1024,4096' },
  batches: { type: 'string', default: '1,8' },
  steps: { type: 'string', default: '16' },
  samples: { type: 'string', default: '8' },
  'seq-len': { type: 'string', default: '64' },
  requests: { type: 'string', default: '8,16' },
  'max-tokens': { type: 'string', default: '32' },
  'bandwidth-gbs': { type: 'string' },
  'budget-s': { type: 'string', default: '420' },
});
const budgetMs = Number(args['budget-s']) * 1000;
const elapsed = () => performance.now() - started;
const log = (line: string) => process.stderr.write(`gpu-check [${(elapsed() / 1000).toFixed(0)}s] ${line}\n`);

const report: Record<string, unknown> = {
  version: 1,
  startedAt: new Date().toISOString(),
  host: { node: process.version, onnxruntime: ort.env.versions.common, cpus: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30) },
  settings: args,
  skipped: [] as string[],
  errors: {} as Record<string, string>,
};
const save = () => {
  report.elapsedSec = Math.round(elapsed()) / 1000;
  fs.writeFileSync(args.out!, JSON.stringify(report, null, 2) + '\n');
};

/** Run a part unless the budget is spent; record its result or its error, then save. */
async function part<T>(name: string, run: () => Promise<T>): Promise<T | undefined> {
  if (elapsed() > budgetMs) {
    (report.skipped as string[]).push(`${name}: budget of ${budgetMs / 1000}s spent`);
    save();
    return undefined;
  }
  log(`${name}…`);
  try {
    const result = await run();
    report[name] = result;
    return result;
  } catch (e) {
    (report.errors as Record<string, string>)[name] = String((e as Error).stack ?? e).slice(0, 2000);
    log(`${name} failed: ${(e as Error).message}`);
    return undefined;
  } finally {
    save();
  }
}

// (1) Device resolution.
const cudaAddon = args['cuda-addon'];
const probe = systemProbe(cudaAddon !== undefined ? { cudaAddon } : {});
const device = await part('device', async () => {
  const [cuda, webgpu, cudaNative] = await Promise.all([probe.cuda(), probe.webgpu(), probe.cudaNative()]);
  const resolved = await resolveTarget(parseDeviceRequest(args.device!), 'auto', probe);
  log(`target ${describeTarget(resolved.target)}: ${resolved.note}${resolved.warning ? ` (warning: ${resolved.warning})` : ''}`);
  return { requested: args.device, nvidiaDriver: probe.nvidiaDriver(), cuda, webgpu, cudaNative, ...resolved };
});
if (!device) {
  log('no usable device; see the JSON');
  process.exit(1);
}
const target = device.target;
/** Every target measured: the resolved one, plus the native CUDA decoder where it loads. */
const targets: ExecutionTarget[] = [target];
if (device.cudaNative.available && target.device !== 'cuda-native' && args.device === 'auto') targets.push({ device: 'cuda-native', dtype: 'float16' });

// (1b) Each native kernel against its JavaScript reference, where the native decoder loads.
if (device.cudaNative.available) {
  await part('kernels', async () => {
    const load = loadCudaBinding(cudaAddon);
    if (!load.binding) throw new Error(load.reason);
    const results = runKernelChecks(load.binding);
    log(`native kernels: ${results.filter((r) => r.pass).length}/${results.length} match the reference`);
    return { pass: results.every((r) => r.pass), results };
  });
}

// (2) Parity on the bundled model.
await part('parity', async () => {
  const m = await loadModel(defaultModelPath());
  const prompt = createTokenizer(m.tokenizer).encode('Once upon a time, there was a little');
  const out: Record<string, unknown> = { model: 'stories260K', promptTokens: prompt.length, decodeSteps: 32 };
  // The native decoder runs float16 only.
  const dtypes = target.device === 'cuda-native' ? (['float16'] as const) : (['float16', 'float32'] as const);
  for (const dtype of dtypes) {
    out[dtype] = await parity(m, prompt, 32, { device: target.device, dtype });
  }
  for (const t of targets.slice(1)) {
    // A second path that fails (kernels the driver refuses, say) must not cost the figures above.
    try {
      out[t.device] = await parity(m, prompt, 32, t);
    } catch (e) {
      out[t.device] = { target: t, error: String((e as Error).message ?? e).slice(0, 1000), pass: false };
    }
  }
  // A 96-token prompt in one run, then in the session's default pieces: whether long prefill runs
  // are right on this device (see WEBGPU_PREFILL_CHUNK in ort-decoder-session.ts).
  const long = createTokenizer(m.tokenizer).encode(fs.readFileSync(defaultCalibrationPath(), 'utf8').slice(0, 2000)).slice(0, 96);
  const longTarget: ExecutionTarget = { device: target.device, dtype: dtypes.at(-1)! };
  out.longPromptOneRun = await parity(m, long, 4, longTarget, 512);
  out.longPromptDefaultChunks = await parity(m, long, 4, longTarget);
  return out;
});

async function parity(m: LoadedModel, prompt: number[], steps: number, t: ExecutionTarget, prefillChunk?: number) {
  const ctx = prompt.length + steps + 1;
  const ref = await ModelSession.create(m.spec, m.weights, { maxBatch: 1, maxContext: ctx, threads: 1 });
  const dev = await createDecoderSession(m.spec, m.weights, { maxBatch: 1, maxContext: ctx, target: t, ...(prefillChunk && { prefillChunk }), ...(cudaAddon !== undefined && { cudaAddon }) });
  let maxAbsDiff = 0;
  let maxAbsLogit = 0;
  let argmaxAgree = 0;
  const compare = (a: Float32Array, b: Float32Array) => {
    let ia = 0;
    let ib = 0;
    for (let i = 0; i < a.length; i++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(a[i]! - b[i]!));
      maxAbsLogit = Math.max(maxAbsLogit, Math.abs(a[i]!));
      if (a[i]! > a[ia]!) ia = i;
      if (b[i]! > b[ib]!) ib = i;
    }
    if (ia === ib) argmaxAgree++;
    return ia;
  };
  let token = compare(await ref.prefill(0, prompt), await dev.prefill(0, prompt));
  for (let s = 0; s < steps; s++) {
    const [a] = await ref.decode([{ slot: 0, token }]);
    const [b] = await dev.decode([{ slot: 0, token }]);
    token = compare(a!, b!); // teacher-forced by the CPU: both see the same tokens
  }
  const chunk = dev.prefillChunk;
  await ref.release();
  await dev.release();
  const tolerance = t.dtype === 'float16' ? 0.25 : 1e-3;
  return { target: t, promptTokens: prompt.length, prefillChunk: chunk, maxAbsDiff, maxAbsLogit, argmaxAgreement: argmaxAgree / (steps + 1), tolerance, pass: maxAbsDiff <= tolerance };
}

// (3) Decode-step cost of the synthetic model.
const preset = args.preset as keyof typeof syntheticPresets;
if (!(preset in syntheticPresets)) throw new Error(`unknown preset '${preset}'; one of ${Object.keys(syntheticPresets).join(', ')}`);
log(`building the synthetic '${preset}' model`);
const big = await loadBenchModel(preset);
const { spec } = big;
const counts = parameterCounts(spec);
report.model = { preset, parameters: counts.total, shape: syntheticPresets[preset] };
const bandwidthGBs = args['bandwidth-gbs'] ? Number(args['bandwidth-gbs']) : null;

/** Bytes one decode token reads: every weight matrix once, the embedding only for its one row. */
function weightBytesPerToken(s: ModelSpec, t: ExecutionTarget): number {
  const p = parameterCounts(s);
  const embedRowsSkipped = s.tiedEmbeddings ? 0 : s.vocabSize * s.hidden - s.hidden;
  return (p.total - embedRowsSkipped) * (t.dtype === 'float16' ? 2 : 4);
}

/** The cached-token counts of a session (benchmarks set them to time a step at a context). */
function lengthsOf(session: DecoderSession): Int32Array {
  return session instanceof ModelSession ? session.cache.lengths : (session as NativeCudaSession).lengths;
}

/** Dense graphs built while measuring, by device, reused by the speedup part (a 1B build takes ~40 s). */
const denseGraphs = new Map<string, DecoderGraph>();

async function measureDecode(t: ExecutionTarget) {
  const contexts = numberListOption('contexts', args.contexts, isPositiveInt).filter((c) => c < spec.maxContext);
  const batches = numberListOption('batches', args.batches, isPositiveInt);
  const steps = Number(args.steps);
  const maxContext = Math.max(...contexts) + steps + 1;
  const t0 = performance.now();
  const graph = t.device === 'cuda-native' ? undefined : buildDecoderGraph(spec, big.weights, { maxContext, logits: 'last', dtype: t.dtype, cacheOutputs: cacheOutputsOn(t.device) });
  if (graph) denseGraphs.set(t.device, graph); // the speedup part serves the dense model with it
  const graphBuildSec = (performance.now() - t0) / 1000;
  const rows: Record<string, unknown>[] = [];
  let prefill: Record<string, unknown> | null = null;
  // One session per batch size, so batch 1 binds one row (the GPU cache binds every slot).
  for (const batch of batches) {
    const session = await createDecoderSession(spec, big.weights, { maxBatch: batch, maxContext, target: t, ...(graph && { graph }), ...(cudaAddon !== undefined && { cudaAddon }) });
    try {
      if (!prefill) {
        // Prefill throughput once, at the middle context, with the session's own chunking.
        const n = contexts[Math.floor(contexts.length / 2)]!;
        const p0 = performance.now();
        await session.prefill(0, Array.from({ length: n }, (_, i) => 3 + ((i * 31) % (spec.vocabSize - 3))));
        prefill = { tokens: n, chunk: session.prefillChunk, tokensPerSec: (n * 1000) / (performance.now() - p0) };
        session.reset(0);
      }
      for (const context of contexts) {
        if (elapsed() > budgetMs * 0.5) {
          rows.push({ context, batch, skipped: 'half the budget spent' });
          continue;
        }
        // The step's cost depends on how many positions attention reads, not on their values:
        // mark each slot as holding `context - 1` tokens (zeros) instead of prefilling them.
        for (let s = 0; s < batch; s++) lengthsOf(session)[s] = context - 1;
        const times: number[] = [];
        for (let k = 0; k < steps + 2; k++) {
          const t = performance.now();
          await session.decode(Array.from({ length: batch }, (_, slot) => ({ slot, token: 5 + k })));
          if (k >= 2) times.push(performance.now() - t); // two warm-up steps
          for (let s = 0; s < batch; s++) lengthsOf(session)[s] = context - 1;
        }
        const msPerStep = median(times);
        const row: Record<string, unknown> = { context, batch, msPerStep, msPerStepMin: Math.min(...times), tokensPerSec: (batch * 1000) / msPerStep };
        if (batch === 1 && bandwidthGBs) row.bandwidthFraction = weightBytesPerToken(spec, t) / (msPerStep / 1000) / (bandwidthGBs * 1e9);
        log(`${t.device} decode step, context ${context}, batch ${batch}: ${msPerStep.toFixed(2)} ms`);
        rows.push(row);
      }
    } finally {
      await session.release();
    }
  }
  const b1 = rows.find((r) => r.batch === 1 && r.context === contexts[0] && typeof r.msPerStep === 'number');
  return {
    target: t,
    kvCache: t.device === 'webgpu' || t.device === 'cuda-native' ? 'on the GPU' : 'host memory',
    graphBuildSec,
    weightBytesPerToken: weightBytesPerToken(spec, t),
    bandwidthGBs,
    boundMsPerToken: bandwidthGBs ? (weightBytesPerToken(spec, t) / (bandwidthGBs * 1e9)) * 1000 : null,
    batch1BandwidthFraction: b1?.bandwidthFraction ?? null,
    targetFraction: 0.5,
    prefill,
    rows,
  };
}

const decodeSteps = await part('decodeSteps', async () => {
  const paths: Record<string, Awaited<ReturnType<typeof measureDecode>>> = {};
  for (const t of targets) {
    try {
      paths[t.device] = await measureDecode(t);
    } catch (e) {
      (report.errors as Record<string, string>)[`decodeSteps.${t.device}`] = String((e as Error).stack ?? e).slice(0, 2000);
    }
  }
  // Choose by measurement: the path with the fastest batch-1 step at the shortest context serves
  // the speedup part.
  const step = (d: string) => {
    const r = paths[d]?.rows.find((x) => x.batch === 1 && typeof x.msPerStep === 'number');
    return r ? (r.msPerStep as number) : Infinity;
  };
  const chosen = targets.reduce((best, t) => (step(t.device) < step(best.device) ? t : best), target);
  log(`serving path by measurement: ${describeTarget(chosen)}`);
  return { chosen, paths };
});
const served = decodeSteps?.chosen ?? target;

// (4) MoP on the device.
const ratio = Number(args.ratio);
let prunedModel: { spec: ModelSpec; weights: LoadedModel['weights'] } | undefined;
const pruned = await part('prune', async () => {
  const calibration = await loadCalibration(createTokenizer(big.tokenizer), { samples: Number(args.samples), seqLen: Number(args['seq-len']), seed: 0 });
  const t0 = performance.now();
  let steps = 0;
  const result = await runMop({ spec: big.spec, weights: big.weights }, {
    target: ratio,
    strategy: 'mop',
    criterion: 'ppl',
    calibration,
    seed: 0,
    device: target.device,
    onProgress: (p) => {
      steps = p.step;
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  prunedModel = result.model;
  return { device: target.device, ratio, achieved: result.report.result.ratio, branches: result.report.result.steps, seconds, steps, parameters: parameterCounts(result.model.spec).total };
});

// (5) Dense vs pruned latency through the real server.
await part('speedup', async () => {
  const model = prunedModel;
  if (!pruned || !model) throw new Error('no pruned model: the prune part did not finish');
  const [n1, n8] = numberListOption('requests', args.requests, isPositiveInt);
  const maxTokens = Number(args['max-tokens']);
  const measure = async (id: string, m: LoadedModel, graph?: DecoderGraph) => {
    const server = await startBenchServer({ model: m, denseId: id, adminToken: 'gpu-check', maxBatch: 8, context: 512, threads: os.availableParallelism(), target: served, ...(graph && { graph }), ...(cudaAddon !== undefined && { cudaAddon }), log: () => undefined });
    try {
      const prompts = ['Once upon a time there was a robot that liked to count the stars in the night sky.'];
      const load = (concurrency: number, requests: number) =>
        runLoad({ url: server.url, model: id, scenario: 'closed', concurrency, maxRequests: requests, durationSec: 300, gracefulStopSec: 10, timeoutSec: 300, stream: true, includeUsage: true, maxTokens, temperature: 0, ignoreEos: true, prompts, p95Ms: 1e9, maxErrorRate: 1 });
      await load(1, 1); // warm-up
      const out: Record<string, unknown> = {};
      for (const [c, n] of [[1, n1!], [8, n8!]] as const) {
        const r = await load(c, n);
        out[`c${c}`] = { ok: r.ok, failed: r.failed, e2eMeanMs: r.latencyMs.e2e?.mean ?? null, e2eP50Ms: r.latencyMs.e2e?.p50 ?? null, tpotMeanMs: r.latencyMs.tpot?.mean ?? null, outputTokensPerSec: r.throughput.outputTokensPerSec };
        log(`${id} c=${c}: mean e2e ${(r.latencyMs.e2e?.mean ?? NaN).toFixed(1)} ms`);
      }
      return out;
    } finally {
      await server.close();
    }
  };
  const built = denseGraphs.get(served.device);
  const dense = await measure('dense', big, built && built.maxContext >= Math.min(512, spec.maxContext) ? built : undefined);
  denseGraphs.clear();
  const prunedFigures = await measure('pruned', { ...big, spec: model.spec, weights: model.weights, path: 'pruned' });
  const ratioOf = (c: string) => {
    const p = (prunedFigures[c] as { e2eMeanMs: number | null }).e2eMeanMs;
    const d = (dense[c] as { e2eMeanMs: number | null }).e2eMeanMs;
    return p !== null && d !== null ? p / d : null;
  };
  return { target: served, maxTokens, dense, pruned: prunedFigures, latencyRatio: { c1: ratioOf('c1'), c8: ratioOf('c8') }, targetRatio: 0.61 };
});

report.finishedAt = new Date().toISOString();
save();
log(`wrote ${args.out}`);
