/**
 * One model's part of the speedup benchmark: profile its decode step, start the server with it as
 * `dense`, prune variants through the admin API in batches of at most `maxLoaded`, drive identical
 * load at every concurrency against dense and each variant (interleaved rounds), read client and
 * server figures, unload the batch, and shut down. Every load run is bounded in requests and time.
 */
import os from 'node:os';
import { type RequestRecord, runLoad } from '../../loadtest/load-generator.ts';
import { parameterCounts } from '../../src/runtime/model/spec.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { AdminClient } from './admin-client.ts';
import { addEngineTimes, type EngineTimes, instrumentScheduler, zeroEngineTimes } from './engine-timing.ts';
import { type DecodeProfile, paramShares, profileDecode, timeDecodeInterleaved } from './decode-profile.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import { clientFigures, finishMeasurement, type Measurement, serverStats } from './figures.ts';
import { addSeries, type HistogramSeries, parseHistograms, snapshotDelta } from './histogram.ts';
import { type BenchModelName, loadBenchModel } from '../lib/bench-model.ts';
import type { ModelSection, StrategyName, VariantResult } from './report.ts';
import { startBenchServer } from './serve.ts';
import type { ExecutionTarget } from '../../src/runtime/device/device.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { sum } from '../lib/stats.ts';

export const HISTOGRAMS = {
  e2e: 'mop_e2e_request_latency_seconds',
  ttft: 'mop_time_to_first_token_seconds',
  tpot: 'mop_time_per_output_token_seconds',
} as const;

export interface MeasureOptions {
  model: BenchModelName;
  strategies: StrategyName[];
  ratios: number[];
  concurrency: number[];
  /** Requests per variant at each concurrency (all rounds together). */
  requests: Map<number, number>;
  /** Rounds per concurrency level; 'auto': one wave (c requests) per round. */
  rounds: number | 'auto';
  maxTokens: number;
  prompts: string[];
  samples: number;
  seqLen: number;
  threads: number;
  /** The served sessions' idle pool threads spin (the server's --ort-spin); default off. */
  ortSpin?: boolean;
  maxLoaded: number;
  tolerance: number;
  /** Bound on one load run (s) and on one prune job (s). */
  runTimeoutSec: number;
  pruneTimeoutSec: number;
  profile: { steps: number; warmup: number; promptTokens: number };
  /** Device and weight storage of every served session and of the profile; default CPU float32. */
  target?: ExecutionTarget;
  /** What the prune targets count (`--budget`): block parameters, or decode-step time. */
  budget: 'params' | 'latency';
  log: (line: string) => void;
}

/** Batches of (ratio, strategy) pairs, ratio-major, at most `size` each (pure). */
export function planBatches(ratios: readonly number[], strategies: readonly StrategyName[], size: number): { ratio: number; strategy: StrategyName }[][] {
  const all = ratios.flatMap((ratio) => strategies.map((strategy) => ({ ratio, strategy })));
  const out: { ratio: number; strategy: StrategyName }[][] = [];
  for (let i = 0; i < all.length; i += Math.max(1, size)) out.push(all.slice(i, i + Math.max(1, size)));
  return out;
}

/** Round r's running order: forwards on even rounds, backwards on odd ones (ABBA against drift). */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...items] : [...items].reverse();
}

/** The prompt list rotated by `offset` (round r starts where round r − 1 stopped). */
export function rotate<T>(items: readonly T[], offset: number): T[] {
  const k = ((offset % items.length) + items.length) % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Requests per round: `rounds` rounds, or (auto) one wave of `concurrency` requests per round (pure). */
export function roundPlan(total: number, concurrency: number, rounds: number | 'auto'): number[] {
  const per = rounds === 'auto' ? Math.max(1, concurrency) : Math.max(1, Math.ceil(total / rounds));
  const plan: number[] = [];
  for (let left = total; left > 0; left -= per) plan.push(Math.min(per, left));
  return plan;
}

export const variantId = (strategy: string, ratio: number) => `${strategy}-${Math.round(ratio * 100)}`;

interface Accum {
  records: RequestRecord[];
  roundE2eMs: number[];
  elapsedSec: number;
  engine: EngineTimes;
  hist: Record<keyof typeof HISTOGRAMS, HistogramSeries | undefined>;
}

/** What one model's measurement holds while it runs: the model, its server and the section it fills. */
interface ModelRun {
  o: MeasureOptions;
  log: (line: string) => void;
  loaded: LoadedModel;
  maxBatch: number;
  shares: ReturnType<typeof paramShares>;
  section: ModelSection;
  server: RunningServer;
  admin: AdminClient;
}

export async function measureModel(o: MeasureOptions): Promise<ModelSection> {
  const t0 = performance.now();
  const log = (line: string) => o.log(`[${o.model}] ${line}`);
  log('building the model');
  const loaded = await loadBenchModel(o.model);
  const tokenizer = createTokenizer(loaded.tokenizer);
  const promptLens = o.prompts.map((p) => tokenizer.encode(p).length + 1);
  const maxBatch = Math.max(...o.concurrency);
  const context = Math.min(loaded.spec.maxContext, Math.max(...promptLens) + o.maxTokens + 8);
  const shares = paramShares(loaded.spec);
  const section = newSection(o, loaded, context, shares);

  // The decode-step profile, before the server holds any memory.
  for (const batch of [...new Set([1, maxBatch])]) {
    log(`decode-step profile at batch ${batch}`);
    const loadBefore = os.loadavg()[0]!;
    const p: DecodeProfile = await profileDecode(loaded, { batch, promptTokens: o.profile.promptTokens, steps: o.profile.steps, warmup: o.profile.warmup, threads: o.threads, maxMs: 60_000, ...(o.target && { target: o.target }) });
    section.profiles.push({ ...p, loadAvg: [loadBefore, os.loadavg()[0]!] });
    log(`  dense ${p.dense.medianMs.toFixed(2)} ms/step, head-only ${p.head.medianMs.toFixed(2)}, overhead-only ${p.overhead.medianMs.toFixed(2)}`);
  }

  log(`starting the server (context ${context}, ${maxBatch} slots, ${o.threads} threads)`);
  const token = `bench-${Math.random().toString(36).slice(2)}`;
  const server = await startBenchServer({ model: loaded, denseId: 'dense', adminToken: token, maxBatch, context, threads: o.threads, ...(o.ortSpin !== undefined && { ortSpin: o.ortSpin }), ...(o.target && { target: o.target }), log: (l) => log(`  server: ${l}`) });
  const run: ModelRun = { o, log, loaded, maxBatch, shares, section, server, admin: new AdminClient(server.url, token) };
  probe(run, 'dense');
  try {
    await warmUp(run, 'dense');
    const batches = planBatches(o.ratios, o.strategies, o.maxLoaded);
    for (let b = 0; b < batches.length; b++) await measureBatch(run, batches[b]!, b + 1, batches.length);
  } catch (e) {
    section.error = e instanceof Error ? e.message : String(e);
    log(`ERROR: ${section.error}`);
  } finally {
    await run.admin.close();
    await server.close();
  }
  section.wallSec = (performance.now() - t0) / 1000;
  if (!Number.isFinite(section.loadAvg[0])) section.loadAvg = [Number.NaN, Number.NaN];
  log(`done in ${(section.wallSec / 60).toFixed(1)} min; load average ${os.loadavg()[0]!.toFixed(2)}`);
  return section;
}

/** The model's section before anything is measured: its shape, parameter counts and the weights-read bound. */
function newSection(o: MeasureOptions, loaded: LoadedModel, context: number, shares: ReturnType<typeof paramShares>): ModelSection {
  const { spec } = loaded;
  const counts = parameterCounts(spec);
  const l0 = spec.layers[0]!;
  return {
    model: o.model,
    shape: `${spec.layers.length} layers × (heads ${l0.heads}, kv ${l0.kvHeads}, headDim ${l0.headDim}, ffn ${l0.ffn}), hidden ${spec.hidden}, vocab ${spec.vocabSize}${spec.tiedEmbeddings ? ', tied embeddings' : ''}`,
    dense: { total: counts.total, blocks: counts.blocks, embeddings: counts.embeddings, lmHead: shares.lmHead, layers: spec.layers.length },
    context,
    variants: [],
    profiles: [],
    paramBound: { lmHeadShare: shares.lmHeadShareOfStepWeights, ratioAt: Object.fromEntries([...new Set([...o.ratios, 0.4])].map((r) => [String(r), shares.predictedRatio(r)])) },
    error: null,
    wallSec: 0,
    loadAvg: [Number.POSITIVE_INFINITY, 0],
    budget: o.budget,
  };
}

/** The engine-time probe of a served variant's scheduler. */
function probe(run: ModelRun, id: string) {
  return instrumentScheduler(run.server.service.get(id)!.scheduler);
}

/** One bounded closed-loop load run against a served model. */
function load(run: ModelRun, model: string, concurrency: number, requests: number, prompts: string[], maxTokens: number) {
  return runLoad({
    url: run.server.url,
    model,
    scenario: 'closed',
    concurrency,
    maxRequests: requests,
    durationSec: run.o.runTimeoutSec,
    gracefulStopSec: 10,
    timeoutSec: run.o.runTimeoutSec,
    stream: true,
    includeUsage: true,
    maxTokens,
    temperature: 0,
    ignoreEos: true,
    prompts,
    recordRequests: true,
    p95Ms: 1e9,
    maxErrorRate: 1,
  });
}

async function warmUp(run: ModelRun, id: string): Promise<void> {
  const tokens = Math.min(8, run.o.maxTokens);
  await load(run, id, 1, 1, run.o.prompts, tokens);
  if (run.maxBatch > 1) await load(run, id, run.maxBatch, run.maxBatch, run.o.prompts, tokens);
}

function denseRow(run: ModelRun, batch: number): VariantResult {
  const { spec } = run.loaded;
  return {
    model: run.o.model,
    id: 'dense',
    strategy: 'dense',
    batch,
    target: 0,
    achieved: 0,
    params: { total: run.section.dense.total, blocks: run.section.dense.blocks },
    layers: spec.layers.filter((l) => l.heads > 0 || l.ffn > 0).length,
    steps: { depth: 0, width: 0 },
    pruneSeconds: null,
    error: null,
    measurements: [],
  };
}

/** One batch: prune its variants, measure dense and each at every concurrency, unload them. */
async function measureBatch(run: ModelRun, batch: { ratio: number; strategy: StrategyName }[], batchNo: number, batches: number): Promise<void> {
  const rows: VariantResult[] = [];
  for (const { ratio, strategy } of batch) {
    run.log(`batch ${batchNo}/${batches}: pruning ${variantId(strategy, ratio)} (${run.o.samples}×${run.o.seqLen} calibration tokens)`);
    rows.push(await pruneVariant(run, strategy, ratio, batchNo));
  }
  const live = rows.filter((r) => !r.error);
  const dense = denseRow(run, batchNo);
  for (const c of run.o.concurrency) await measureConcurrency(run, dense, live, c);
  run.section.variants.push(dense, ...rows);
  for (const r of live) {
    await run.admin.unload(r.id);
    run.log(`  unloaded ${r.id}`);
  }
}

/** Prune one variant through the admin API (not activated), time MoP's shape alone, warm it up; a failure is recorded in the row. */
async function pruneVariant(run: ModelRun, strategy: StrategyName, ratio: number, batchNo: number): Promise<VariantResult> {
  const { o, log } = run;
  const id = variantId(strategy, ratio);
  const row: VariantResult = { model: o.model, id, strategy, batch: batchNo, target: ratio, achieved: Number.NaN, params: { total: 0, blocks: 0 }, layers: 0, steps: { depth: 0, width: 0 }, pruneSeconds: null, error: null, measurements: [] };
  try {
    const job = await run.admin.prune(
      // No recovery fine-tuning: latency is a property of the pruned shape, and a 1B model cannot be
      // fine-tuned in a benchmark's time here (the shapes are those MoP picks by calibration loss as cut).
      { target: ratio, strategy, id, activate: false, samples: o.samples, seq_len: o.seqLen, recovery: 'none', budget: o.budget },
      { timeoutMs: o.pruneTimeoutSec * 1000, onProgress: (l) => log(`  ${id}: ${l}`) },
    );
    row.pruneSeconds = job.seconds;
    if (job.status !== 'succeeded' || !job.report) throw new Error(`prune job ${job.jobId} ${job.status}: ${job.error ?? 'no report'}`);
    const res = job.report.result;
    row.achieved = res.ratio;
    row.params = { total: res.params.total, blocks: res.params.blocks };
    row.layers = res.layers.filter((l) => l.heads > 0 || l.ffn > 0).length;
    row.steps = { ...res.steps };
    probe(run, id);
    log(`  ${id}: ratio ${res.ratio.toFixed(3)}, ${res.steps.depth} depth + ${res.steps.width} width steps, ${row.layers} layers, ${job.seconds.toFixed(1)} s; rss ${(process.memoryUsage().rss / 2 ** 30).toFixed(2)} GiB`);
    if (strategy === 'mop') await profilePrunedStep(run, row, res.ratio);
    await warmUp(run, id);
  } catch (e) {
    row.error = e instanceof Error ? e.message : String(e);
    log(`  ${id}: FAILED: ${row.error}`);
  }
  return row;
}

/** The pruned shape's own decode step against dense's, interleaved, before any load runs. */
async function profilePrunedStep(run: ModelRun, row: VariantResult, achieved: number): Promise<void> {
  const { o } = run;
  const pruned = (run.server.service.get(row.id) as { model?: LoadedModel } | undefined)?.model;
  if (!pruned) return;
  const load0 = os.loadavg()[0]!;
  const [d, p] = await timeDecodeInterleaved([run.loaded, pruned], { batch: 1, promptTokens: o.profile.promptTokens, steps: o.profile.steps, warmup: o.profile.warmup, threads: o.threads, maxMs: 60_000, ...(o.target && { target: o.target }) });
  row.stepProfile = { denseMs: d!.medianMs, variantMs: p!.medianMs, ratio: p!.medianMs / d!.medianMs, bound: run.shares.predictedRatio(achieved), loadAvg: [load0, os.loadavg()[0]!] };
  run.log(`  ${row.id}: decode step ${p!.medianMs.toFixed(2)} ms vs dense ${d!.medianMs.toFixed(2)} ms = ${row.stepProfile.ratio.toFixed(3)} (weights-read bound ${row.stepProfile.bound.toFixed(3)})`);
}

/** Dense and every live variant at concurrency c: interleaved rounds, then each one's figures and ratios against dense. */
async function measureConcurrency(run: ModelRun, dense: VariantResult, live: VariantResult[], c: number): Promise<void> {
  const acc = await runRounds(run, [dense, ...live], c);
  const figures = (m: VariantResult) => {
    const a = acc.get(m)!;
    return { client: clientFigures(a.records, a.elapsedSec), server: { e2e: serverStats(a.hist.e2e), ttft: serverStats(a.hist.ttft), tpot: serverStats(a.hist.tpot) } };
  };
  const extra = (m: VariantResult) => ({ engine: acc.get(m)!.engine, roundE2eMs: acc.get(m)!.roundE2eMs });
  const d = { ...figures(dense), ...extra(dense) };
  dense.measurements.push(finishMeasurement(c, d.client, d.server, undefined, run.o.tolerance, extra(dense)));
  for (const m of live) {
    const f = figures(m);
    const meas: Measurement = finishMeasurement(c, f.client, f.server, d, run.o.tolerance, extra(m));
    m.measurements.push(meas);
    const pr = meas.ratio?.paired;
    run.log(`  c=${c} ${m.id}: ratio p50 ${meas.ratio?.clientP50.toFixed(3)} (server mean ${meas.ratio?.serverMean.toFixed(3)}; per round ${pr ? `${pr.median.toFixed(3)} [${pr.min.toFixed(3)}–${pr.max.toFixed(3)}]` : '-'})`);
  }
}

/** The load rounds at concurrency c, every model in turn within a round (order alternating), with /metrics read around each run. */
async function runRounds(run: ModelRun, models: VariantResult[], c: number): Promise<Map<VariantResult, Accum>> {
  const { o, section } = run;
  const total = o.requests.get(c) ?? 16;
  const plan = roundPlan(total, c, o.rounds);
  const acc = new Map<VariantResult, Accum>(models.map((m) => [m, { records: [], roundE2eMs: [], elapsedSec: 0, engine: zeroEngineTimes(), hist: { e2e: undefined, ttft: undefined, tpot: undefined } }]));
  for (let r = 0; r < plan.length; r++) {
    const prompts = rotate(o.prompts, sum(plan.slice(0, r)));
    for (const m of roundOrder(models, r)) {
      const before = parseHistograms(await run.admin.metrics(), Object.values(HISTOGRAMS));
      const load1 = os.loadavg()[0]!;
      section.loadAvg = [Math.min(section.loadAvg[0], load1), Math.max(section.loadAvg[1], load1)];
      probe(run, m.id).take();
      const rep = await load(run, m.id, c, Math.min(plan[r]!, total), prompts, o.maxTokens);
      const engine = probe(run, m.id).take();
      const after = parseHistograms(await run.admin.metrics(), Object.values(HISTOGRAMS));
      const a = acc.get(m)!;
      a.engine = addEngineTimes(a.engine, engine);
      a.records.push(...(rep.requests ?? []));
      a.roundE2eMs[r] = rep.latencyMs.e2e?.mean ?? Number.NaN;
      a.elapsedSec += rep.elapsedSec;
      for (const k of Object.keys(HISTOGRAMS) as (keyof typeof HISTOGRAMS)[]) {
        const d = snapshotDelta(after, before, HISTOGRAMS[k], m.id);
        if (d) a.hist[k] = addSeries(a.hist[k], d);
      }
      const e2e = rep.latencyMs.e2e;
      if (plan.length <= 8 || r === plan.length - 1 || r % 4 === 0) run.log(`  c=${c} round ${r + 1}/${plan.length} ${m.id}: ${rep.ok}/${rep.sent} ok in ${rep.elapsedSec.toFixed(1)} s, e2e p50 ${e2e ? e2e.p50.toFixed(0) : '-'} ms, ${rep.throughput.outputTokensPerSec.toFixed(1)} tok/s`);
    }
  }
  return acc;
}
