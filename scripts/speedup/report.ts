/**
 * The speedup report: its JSON shape, the target checks, the Markdown (tables, method, closing
 * note with the measured causes) and the chart panels. Pure: everything comes from the report
 * object that bench-speedup.ts fills.
 */
import type { DecodeProfile } from './decode-profile.ts';
import { profileRatio } from './decode-profile.ts';
import type { Measurement } from './figures.ts';
import type { PeerQuant, PeerReport, PeerRun } from './llamacpp-peer.ts';
import type { ChartPanel } from './svg.ts';
import { median } from '../lib/stats.ts';

export type StrategyName = 'mop' | 'depth' | 'width';

export interface VariantResult {
  model: string;
  /** Served id (`dense`, `mop-40`, ...). */
  id: string;
  strategy: 'dense' | StrategyName;
  /** Measurement batch: a dense row per batch, measured interleaved with that batch's variants. */
  batch: number;
  target: number;
  /** Achieved compression: fraction of the dense model's block parameters removed. */
  achieved: number;
  params: { total: number; blocks: number };
  /** Layers that still hold attention or an MLP. */
  layers: number;
  steps: { depth: number; width: number };
  pruneSeconds: number | null;
  error: string | null;
  measurements: Measurement[];
  /**
   * MoP variants: decode steps of this variant and of dense alone (ModelSession, batch 1,
   * interleaved step by step), beside the weights-read bound for its achieved compression.
   */
  stepProfile?: { denseMs: number; variantMs: number; ratio: number; bound: number; loadAvg: [number, number] };
}

export interface ModelSection {
  model: string;
  /** e.g. "12 layers × (heads 12, kv 4, headDim 64, ffn 2048), hidden 768, vocab 32000". */
  shape: string;
  dense: { total: number; blocks: number; embeddings: number; lmHead: number; layers: number };
  context: number;
  variants: VariantResult[];
  /** Decode-step breakdown (ModelSession, no server) at batch 1 and at the highest concurrency. */
  profiles: (DecodeProfile & { loadAvg?: [number, number] })[];
  /** LM-head share of the weights a decode step reads, and the ratio that share bounds at each compression. */
  paramBound: { lmHeadShare: number; ratioAt: Record<string, number> };
  error: string | null;
  wallSec: number;
  /** Lowest and highest 1-minute load average seen at the start of the load runs (other processes). */
  loadAvg: [number, number];
  /**
   * What the variants' targets counted (absent in reports from before the option: params). With
   * 'latency' a variant's target is a share of decode-step time and its parameter compression is
   * what it came to, so the targets defined at 40% parameter compression are not judged.
   */
  budget?: 'params' | 'latency';
}

export interface TargetCheck {
  id: 'e2e-c1' | 'e2e-c8' | 'e2e-c1-vs-bound' | 'decode-vs-llamacpp' | 'decode-vs-llamacpp-q8_0' | 'decode-vs-llamacpp-q4_0';
  model: string;
  description: string;
  threshold: string;
  /** The client-side figure the target is judged on. */
  value: number | null;
  /** The server-side counterpart (histogram means), or llama.cpp's figure for the peer target. */
  other: number | null;
  met: boolean | null;
  /**
   * false when the verdict is within this run's noise: the per-round pairs cross the threshold, the
   * verdict flips against the median of the model's dense measurements, or the blocks came out
   * implausibly faster than their parameter share (a slowed dense measurement). null: not judged.
   */
  robust: boolean | null;
  measured: string;
  /** Why the verdict is within noise (empty when robust). */
  note: string;
}

export interface SpeedupReport {
  version: 1;
  date: string;
  command: string;
  durationSec: number;
  machine: { cpu: string; cores: number; memGiB: number; node: string; platform: string; loadAvgStart: number[]; loadAvgEnd: number[]; threads: number; /** absent in older reports: off */ ortSpin?: boolean };
  settings: {
    quick: boolean;
    /** Weight storage of every served model: float32, or int8 / int4 blocks (MatMulNBits). Absent: float32. */
    dtype?: string;
    /** What the prune targets counted (--budget). Absent: params. */
    budget?: 'params' | 'latency';
    models: string[];
    strategies: StrategyName[];
    ratios: number[];
    concurrency: number[];
    requests: Record<string, number>;
    maxTokens: number;
    rounds: number | 'auto';
    samples: number;
    seqLen: number;
    maxLoaded: number;
    tolerance: number;
    promptsFile: string;
    promptCount: number;
  };
  models: ModelSection[];
  peer: PeerReport | null;
  peerError: string | null;
  targets: TargetCheck[];
  /** Set when the report merges several runs (bench-speedup --render-only a.json,b.json). */
  runs?: { command: string; date: string; durationSec: number; models: string[]; dtype: string; loadAvgStart: number[] }[];
  /** Peer results merged in from separate bench-llamacpp runs (file: what it holds). */
  peerExtra?: string[];
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** A Markdown table; `align` per column: 'l' or 'r' (default 'r' except the first column). */
export function mdTable(headers: readonly string[], rows: readonly (readonly string[])[], align?: readonly ('l' | 'r')[]): string {
  const a = headers.map((_, i) => align?.[i] ?? (i === 0 ? 'l' : 'r'));
  const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = [`| ${headers.map(cell).join(' | ')} |`, `| ${a.map((x) => (x === 'r' ? '---:' : '---')).join(' | ')} |`];
  for (const r of rows) {
    if (r.length !== headers.length) throw new Error(`table row has ${r.length} cells, the header ${headers.length}: ${r.join(' | ')}`);
    lines.push(`| ${r.map(cell).join(' | ')} |`);
  }
  return lines.join('\n');
}

export const fmt = {
  ms(v: number | null | undefined): string {
    if (v === null || v === undefined || !Number.isFinite(v)) return '–';
    return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  },
  ratio(v: number | null | undefined): string {
    return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(3);
  },
  pct(v: number | null | undefined, digits = 1): string {
    return v === null || v === undefined || !Number.isFinite(v) ? '–' : `${(100 * v).toFixed(digits)}%`;
  },
  params(v: number): string {
    return v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}K` : String(v);
  },
  rate(v: number | null | undefined): string {
    return v === null || v === undefined || !Number.isFinite(v) ? '–' : v >= 100 ? v.toFixed(0) : v.toFixed(1);
  },
};

/** "0.762 [0.70–0.85]" */
export function pairedText(p: { median: number; min: number; max: number } | null | undefined): string {
  return p ? `${fmt.ratio(p.median)} [${p.min.toFixed(2)}–${p.max.toFixed(2)}]` : '–';
}

/** A target with a figure but no verdict was measured under conditions it is not defined for (a latency budget). */
const verdict = (t: Pick<TargetCheck, 'met' | 'robust' | 'value'>) => (t.met === null ? (t.value === null ? 'not measured' : 'not judged') : (t.met ? '**met**' : '**missed**') + (t.robust === false ? ' (within noise)' : ''));

// ---------------------------------------------------------------------------------------------
// Targets

export const TARGETS = { c1: { concurrency: 1, ratio: 0.61 }, c8: { concurrency: 8, ratio: 0.65 }, compression: 0.4, vsBound: 0.03 } as const;

function measurementAt(v: VariantResult | undefined, c: number): Measurement | undefined {
  return v?.measurements.find((m) => m.concurrency === c);
}

/** The variant a target talks about: `strategy` pruned to `target` (within half a point). */
export function findVariant(section: ModelSection, strategy: StrategyName, target: number): VariantResult | undefined {
  return section.variants.find((v) => v.strategy === strategy && Math.abs(v.target - target) < 0.005 && !v.error);
}

/** The peer's result for a model at a quantization (reports before quantized peers: F32). */
export function peerModel(peer: PeerReport | null, model: string, quant: PeerQuant = 'f32') {
  return peer?.models.find((m) => m.model === model && (m.quant ?? 'f32') === quant);
}

/** The headline peer run: the first thread count (all cores). */
export function headlinePeerRun(peer: PeerReport | null, model: string, quant: PeerQuant = 'f32'): PeerRun | undefined {
  return peerModel(peer, model, quant)?.runs[0];
}

/**
 * Is "ours ≥ llama.cpp" the same verdict at the other thread counts and by the typical (median)
 * decode step of the best repetitions? Tokens/s include stalls from other load; the median step is
 * the uncontended kernel speed.
 */
function peerRobustness(run: PeerRun | undefined, others: PeerRun[], ours: number | null, theirs: number | null): { robust: boolean | null; note: string } {
  if (ours === null || theirs === null || !run?.ours || !run.llamacpp) return { robust: null, note: '' };
  const met = ours >= theirs;
  const reasons: string[] = [];
  // (The other thread counts are part of the verdict itself: ours must be ahead at each.)
  void others;
  const o = run.ours.best.medianStepMs;
  const t = run.llamacpp.best.medianStepMs;
  if (o <= t !== met) reasons.push(`by the median decode step llama.cpp is ${t < o ? 'faster' : 'slower'} (${fmt.ms(t)} vs ${fmt.ms(o)} ms ours): its tokens/s ${t < o ? 'are pulled down by stalls under other load, so on an idle machine it may well be ahead' : 'are helped by a few fast steps'}`);
  return { robust: reasons.length === 0, note: reasons.join('; ') };
}

export function evaluateTargets(report: Pick<SpeedupReport, 'models' | 'peer' | 'peerError'>): TargetCheck[] {
  const out: TargetCheck[] = [];
  for (const s of report.models) {
    const v = findVariant(s, 'mop', TARGETS.compression);
    for (const [id, t] of [
      ['e2e-c1', TARGETS.c1],
      ['e2e-c8', TARGETS.c8],
    ] as const) {
      const m = measurementAt(v, t.concurrency);
      const value = m?.ratio?.clientP50 ?? null;
      const server = m?.ratio?.serverMean ?? null;
      // Under a latency budget the variant's 40% is decode time, not parameters: shown, not judged.
      const judged = s.budget !== 'latency';
      const met = !judged || value === null || !Number.isFinite(value) ? null : value <= t.ratio;
      // Robustness: the same verdict from every angle this run offers?
      const denseP50 = s.variants.filter((x) => x.strategy === 'dense').flatMap((x) => {
        const p = measurementAt(x, t.concurrency)?.client.e2e?.p50;
        return p !== undefined && Number.isFinite(p) ? [p] : [];
      });
      const medDense = median(denseP50);
      const vsMedian = m?.client.e2e && Number.isFinite(medDense) ? m.client.e2e.p50 / medDense : Number.NaN;
      const reasons: string[] = [];
      const pr = m?.ratio?.paired;
      if (met !== null && pr && pr.min <= t.ratio && pr.max > t.ratio) reasons.push(`the per-round pairs range over ${pr.min.toFixed(2)}–${pr.max.toFixed(2)}, across ${t.ratio}`);
      if (met !== null && Number.isFinite(vsMedian) && vsMedian <= t.ratio !== met) reasons.push(`against the median of the ${denseP50.length} dense measurements it is ${fmt.ratio(vsMedian)}`);
      const prof = s.profiles.find((p) => p.batch === t.concurrency);
      const denseM = v && measurementAt(s.variants.find((x) => x.strategy === 'dense' && x.batch === v.batch), t.concurrency);
      const dec = m && denseM && prof && v ? decomposeRatio(denseM, m, prof.head.medianMs, 1 - v.achieved) : null;
      if (met !== null && dec && dec.blocks < -0.03) reasons.push(`its blocks came out faster than their parameter share (${dec.blocks.toFixed(3)}), which points to a slowed dense measurement in its batch`);
      out.push({
        id,
        model: s.model,
        description: `MoP at ${fmt.pct(TARGETS.compression, 0)} compression: e2e latency ratio (pruned / dense, p50) at concurrency ${t.concurrency}`,
        threshold: `≤ ${t.ratio.toFixed(2)}`,
        value,
        other: server,
        met,
        robust: met === null ? null : reasons.length === 0,
        measured: m
          ? `${fmt.ratio(value)} (per-round pairs ${pairedText(m.ratio?.paired)}; vs the median of ${denseP50.length} dense measurements ${fmt.ratio(vsMedian)}; server histograms, mean: ${fmt.ratio(server)}; achieved compression ${fmt.pct(v?.achieved)})`
          : v ? `concurrency ${t.concurrency} not measured` : `no MoP variant at ${TARGETS.compression}`,
        note: judged ? reasons.join('; ') : `latency budget: the variant removed ${fmt.pct(v?.achieved)} of the block parameters for a 40% decode-time target, so this target (40% parameter compression) is not judged`,
      });
    }
    // The weights-read bound: how close the measured c=1 ratio comes to what parameter counts allow.
    {
      const m = measurementAt(v, TARGETS.c1.concurrency);
      const bound = s.paramBound.ratioAt[String(TARGETS.compression)] ?? null;
      const measured = m?.ratio?.clientP50 ?? null;
      const value = measured === null || bound === null || !Number.isFinite(measured) ? null : measured - bound;
      out.push({
        id: 'e2e-c1-vs-bound',
        model: s.model,
        description: `MoP at ${fmt.pct(TARGETS.compression, 0)}, concurrency 1: measured e2e ratio − weights-read bound (LM head ${fmt.pct(s.paramBound.lmHeadShare)} of a step's weights)`,
        threshold: `≤ ${TARGETS.vsBound}`,
        value,
        other: bound,
        met: value === null || s.budget === 'latency' ? null : Math.abs(value) <= TARGETS.vsBound,
        robust: null,
        measured: value === null ? 'not measured' : `${value >= 0 ? '+' : ''}${value.toFixed(3)} (measured ${fmt.ratio(measured)}, bound ${fmt.ratio(bound)})`,
        note: s.budget === 'latency' ? 'latency budget: the bound is for 40% of the block parameters, which this variant did not aim at; not judged' : '',
      });
    }
    for (const quant of ['f32', 'q8_0', 'q4_0'] as const) {
      const pm = peerModel(report.peer, s.model, quant);
      if (quant !== 'f32' && !pm) continue;
      if (quant === 'f32' && !pm && report.peer?.models.some((x) => x.model === s.model)) continue;
      out.push(peerTarget(report, s.model, quant));
    }
  }
  return out;
}

const peerIds = { f32: 'decode-vs-llamacpp', q8_0: 'decode-vs-llamacpp-q8_0', q4_0: 'decode-vs-llamacpp-q4_0' } as const;
const oursDtype = { f32: 'float32', q8_0: 'int8', q4_0: 'int4' } as const;

/** Dense decode at batch 1: ours vs llama.cpp on the same GGUF weights at one quantization. */
function peerTarget(report: Pick<SpeedupReport, 'peer' | 'peerError'>, model: string, quant: PeerQuant): TargetCheck {
  {
    const run = headlinePeerRun(report.peer, model, quant);
    const others = (peerModel(report.peer, model, quant)?.runs.slice(1) ?? []).filter((x) => x.ours && x.llamacpp);
    const othersText = others.map((x) => `; at ${x.threads} thread(s) ${fmt.rate(x.ours!.best.decodeTokensPerSec)} vs ${fmt.rate(x.llamacpp!.best.decodeTokensPerSec)}`).join('');
    const ours = run?.ours?.best.decodeTokensPerSec ?? null;
    const theirs = run?.llamacpp?.best.decodeTokensPerSec ?? null;
    const peerMissing = !report.peer?.available ? (report.peer?.reason ?? report.peerError ?? 'the peer did not run') : theirs === null || ours === null ? (peerModel(report.peer, model, quant)?.error ?? 'llama.cpp did not run on this model') : '';
    return {
      id: peerIds[quant],
      model,
      description: `dense decode tokens/s at batch 1, ours (${oursDtype[quant]}) vs llama.cpp (same weights as GGUF ${quant.toUpperCase()}, CPU, threads)`,
      threshold: '≥ llama.cpp at every thread count',
      value: ours,
      other: theirs,
      // Threads are pinned (all cores, then 1): ours must be ahead at each, not only at the headline count.
      met: ours === null || theirs === null ? null : ours >= theirs && others.every((x) => x.ours!.best.decodeTokensPerSec >= x.llamacpp!.best.decodeTokensPerSec),
      ...peerRobustness(run, others, ours, theirs),
      measured:
        ours !== null && theirs !== null
          ? `${fmt.rate(ours)} vs ${fmt.rate(theirs)} tok/s (${run!.threads} threads, best of ${run!.ours!.reps.length}; medians ${fmt.rate(run!.ours!.medianDecodeTokensPerSec)} vs ${fmt.rate(run!.llamacpp!.medianDecodeTokensPerSec)}${othersText})`
          : `ours ${fmt.rate(ours)} tok/s; llama.cpp ${fmt.rate(theirs)}: ${peerMissing}`,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Tables

function stepsText(v: VariantResult): string {
  return v.strategy === 'dense' ? '–' : `${v.steps.depth} / ${v.steps.width}`;
}

/** The variants measured at `concurrency`, in order, each with its measurement and its row label. */
function measuredAt(s: ModelSection, concurrency: number): { v: VariantResult; m: Measurement; label: string }[] {
  return s.variants.flatMap((v) => {
    const m = measurementAt(v, concurrency);
    return m ? [{ v, m, label: v.strategy === 'dense' ? `dense (batch ${v.batch})` : v.id }] : [];
  });
}

export function variantsTable(s: ModelSection): string {
  const seen = new Set<string>();
  const rows = s.variants
    .filter((v) => v.strategy !== 'dense' || !seen.has('dense'))
    .map((v) => {
      if (v.strategy === 'dense') seen.add('dense');
      return [
        v.strategy === 'dense' ? 'dense' : v.id,
        v.strategy,
        v.strategy === 'dense' ? '–' : fmt.pct(v.target, 0),
        v.strategy === 'dense' ? '0%' : fmt.pct(v.achieved),
        fmt.params(v.params.total),
        fmt.params(v.params.blocks),
        String(v.layers),
        stepsText(v),
        v.pruneSeconds === null ? '–' : v.pruneSeconds.toFixed(1),
        v.stepProfile ? `${fmt.ms(v.stepProfile.variantMs)} vs ${fmt.ms(v.stepProfile.denseMs)} = ${fmt.ratio(v.stepProfile.ratio)} (bound ${fmt.ratio(v.stepProfile.bound)})` : '–',
        v.error ?? '',
      ];
    });
  return mdTable(['variant', 'strategy', 'target', 'achieved', 'params total', 'params blocks', 'layers', 'steps depth / width', 'prune s', 'decode step ms vs dense, batch 1 (weights-read bound)', 'error'], rows, ['l', 'l']);
}

/** The main table: per variant at one concurrency, client figures and both ratios. */
export function latencyTable(s: ModelSection, concurrency: number): string {
  const rows = measuredAt(s, concurrency).map(({ v, m, label }) => {
    const c = m.client;
    const agree = m.agreement.ratio;
    return [
      label,
      v.strategy === 'dense' ? '0%' : fmt.pct(v.achieved),
      fmt.params(v.params.total),
      fmt.params(v.params.blocks),
      stepsText(v),
      fmt.ms(c.e2e?.p50),
      fmt.ms(c.e2e?.p99),
      fmt.ms(c.ttft?.p50),
      fmt.ms(c.tpot?.p50),
      fmt.rate(c.tokensPerSec),
      m.ratio ? fmt.ratio(m.ratio.clientP50) : '1',
      m.ratio ? fmt.ratio(m.ratio.clientMean) : '1',
      m.ratio ? pairedText(m.ratio.paired) : '1',
      m.ratio ? fmt.ratio(m.ratio.serverMean) : '1',
      agree ? `${agree.agree ? 'yes' : 'NO'} (${fmt.pct(agree.relDiff)})` : '–',
      c.failed ? `${c.failed} failed` : `${c.ok}`,
    ];
  });
  return mdTable(
    ['variant', 'compression', 'params total', 'params blocks', 'steps D / W', 'e2e p50 ms', 'e2e p99 ms', 'TTFT p50 ms', 'TPOT p50 ms', 'tok/s', 'ratio p50 (client)', 'ratio mean (client)', 'ratio per round: median [min–max]', 'ratio mean (server)', 'client ≈ server', 'requests ok'],
    rows,
    ['l'],
  );
}

/** Server-side figures (histogram deltas) beside the client's means. */
export function serverTable(s: ModelSection, concurrency: number): string {
  const rows = measuredAt(s, concurrency).map(({ m, label }) => {
    const sv = m.server;
    return [
      label,
      fmt.ms(sv.e2e?.mean),
      fmt.ms(m.client.e2e?.mean),
      m.agreement.e2eMean ? `${m.agreement.e2eMean.agree ? 'yes' : 'NO'} (${fmt.pct(m.agreement.e2eMean.relDiff)})` : '–',
      sv.e2e && m.client.e2e ? fmt.ms(m.client.e2e.mean - sv.e2e.mean) : '–',
      fmt.ms(sv.e2e?.p50),
      fmt.ms(sv.e2e?.p99),
      fmt.ms(sv.ttft?.mean),
      fmt.ms(m.client.ttft?.mean),
      fmt.ms(sv.tpot?.mean),
      fmt.ms(m.client.tpot?.mean),
      m.ratio ? fmt.ratio(m.ratio.serverP50) : '1',
      String(sv.e2e?.count ?? 0),
    ];
  });
  return mdTable(
    ['variant', 'e2e mean ms (server)', 'e2e mean ms (client)', 'agree', 'client − server ms', 'e2e p50 ms (server, interp.)', 'e2e p99 ms (server, interp.)', 'TTFT mean (server)', 'TTFT mean (client)', 'TPOT mean (server)', 'TPOT mean (client)', 'ratio p50 (server, interp.)', 'n'],
    rows,
    ['l'],
  );
}

/** Engine vs outside-engine time per request in closed-loop terms (× concurrency / requests), from the same runs (pure). */
export function engineSplit(m: Measurement): { engineMs: number; outsideMs: number; prefillMs: number; decodeMs: number; meanStepMs: number; meanBatch: number; busyShare: number } | null {
  const e = m.engine;
  if (!e || m.client.ok === 0) return null;
  const wallMs = m.client.elapsedSec * 1000;
  const k = m.concurrency / m.client.ok;
  const engine = e.decodeMs + e.prefillMs;
  return {
    engineMs: engine * k,
    outsideMs: Math.max(0, wallMs - engine) * k,
    prefillMs: e.prefillMs * k,
    decodeMs: e.decodeMs * k,
    meanStepMs: e.decodeSteps ? e.decodeMs / e.decodeSteps : Number.NaN,
    meanBatch: e.decodeSteps ? e.decodeRows / e.decodeSteps : Number.NaN,
    busyShare: wallMs > 0 ? engine / wallMs : Number.NaN,
  };
}

export interface RatioDecomposition {
  /** Wall time per request, variant / dense (≈ the client's mean-e2e ratio). */
  ratio: number;
  /** The fraction of block parameters kept: the ratio if everything shrank with the blocks. */
  ideal: number;
  /** What the LM head and fixed per-step cost (not pruned) add above the ideal. */
  head: number;
  /** What the blocks add by not shrinking in proportion to their parameters (negative: faster than proportional). */
  blocks: number;
  /** What time outside the engine adds by not shrinking. */
  outside: number;
}

/**
 * ratio − ideal split into three measured parts (pure): per request, dense = H + B + O (head-only
 * step × decode steps, the rest of the engine time, time outside the engine), likewise the variant
 * (same H per step: the head is never pruned); ratio − keep = [H(1 − keep) + (B_v − keep·B_d) + (O_v − keep·O_d)] / dense.
 */
export function decomposeRatio(dense: Measurement, variant: Measurement, headStepMs: number, keep: number): RatioDecomposition | null {
  const d = engineSplit(dense);
  const v = engineSplit(variant);
  if (!d || !v || !dense.engine || !variant.engine) return null;
  const headOf = (m: Measurement) => headStepMs * m.engine!.decodeSteps * (m.concurrency / m.client.ok);
  const hd = headOf(dense);
  const hv = headOf(variant);
  const bd = d.engineMs - hd;
  const bv = v.engineMs - hv;
  const total = d.engineMs + d.outsideMs;
  if (!(total > 0)) return null;
  return {
    ratio: (v.engineMs + v.outsideMs) / total,
    ideal: keep,
    head: (hv - keep * hd) / total,
    blocks: (bv - keep * bd) / total,
    outside: (v.outsideMs - keep * d.outsideMs) / total,
  };
}

/** Where each variant's latency went in the same runs: engine (prefill + decode) vs everything else. */
export function engineTable(s: ModelSection, concurrency: number): string {
  const denseSplit = new Map<number, ReturnType<typeof engineSplit>>();
  const rows = measuredAt(s, concurrency).map(({ v, m, label }) => {
    const x = engineSplit(m);
    if (v.strategy === 'dense') denseSplit.set(v.batch, x);
    const d = denseSplit.get(v.batch);
    return [
      label,
      fmt.ms(x?.meanStepMs),
      x ? x.meanBatch.toFixed(1) : '–',
      fmt.ms(x?.prefillMs),
      fmt.ms(x?.decodeMs),
      fmt.ms(x?.outsideMs),
      fmt.pct(x?.busyShare, 0),
      v.strategy === 'dense' || !x || !d ? '1' : fmt.ratio(x.engineMs / d.engineMs),
      v.strategy === 'dense' || !x || !d ? '1' : fmt.ratio(x.outsideMs / d.outsideMs),
      m.server.tpot && x ? fmt.ms(m.server.tpot.mean - x.meanStepMs) : '–',
    ];
  });
  return mdTable(
    ['variant', 'decode step ms (mean)', 'mean batch', 'prefill ms / request', 'decode ms / request', 'outside engine ms / request', 'engine busy', 'engine time ratio', 'outside ratio', 'server TPOT − step ms'],
    rows,
    ['l'],
  );
}

export function profileTable(s: ModelSection, ratios: readonly number[]): string {
  const rows = s.profiles.map((p) => [
    String(p.batch),
    fmt.ms(p.dense.medianMs),
    fmt.ms(p.head.medianMs),
    fmt.ms(p.overhead.medianMs),
    fmt.ms(p.blocksMs),
    `${fmt.ms(p.lmHeadMs)} (${fmt.pct(p.lmHeadMs / p.dense.medianMs, 0)})`,
    fmt.ratio(p.floorRatio),
    ratios.map((r) => `${fmt.pct(r, 0)}: ${fmt.ratio(profileRatio(p, r))}`).join(', '),
  ]);
  return mdTable(['batch', 'dense step ms', 'head-only step ms', 'overhead-only step ms', 'blocks ms', 'LM head ms (share)', 'floor (no blocks)', 'predicted ratio (step ∝ block params)'], rows);
}

export function peerTable(peer: PeerReport): string {
  const rows: string[][] = [];
  for (const m of peer.models) {
    for (const r of m.runs) {
      rows.push([
        m.model,
        (m.quant ?? 'f32').toUpperCase(),
        String(r.threads),
        `${fmt.rate(r.ours?.best.decodeTokensPerSec)} / ${fmt.rate(r.ours?.medianDecodeTokensPerSec)}`,
        `${fmt.rate(r.llamacpp?.best.decodeTokensPerSec)} / ${fmt.rate(r.llamacpp?.medianDecodeTokensPerSec)}`,
        r.ours && r.llamacpp ? fmt.ratio(r.ours.best.decodeTokensPerSec / r.llamacpp.best.decodeTokensPerSec) : '–',
        `${fmt.rate(r.ours?.best.promptTokensPerSec)} / ${fmt.rate(r.ours?.medianPromptTokensPerSec)}`,
        `${fmt.rate(r.llamacpp?.best.promptTokensPerSec)} / ${fmt.rate(r.llamacpp?.medianPromptTokensPerSec)}`,
        `${fmt.ms(r.ours?.best.medianStepMs)} / ${fmt.ms(r.llamacpp?.best.medianStepMs)}`,
        r.loadAvg.map((x) => x.toFixed(2)).join(' → '),
      ]);
    }
  }
  return mdTable(
    ['model', 'weights (ours: F32 float32, Q8_0 int8, Q4_0 int4)', 'threads', 'ours decode tok/s (best / median)', 'llama.cpp decode tok/s (best / median)', 'ours / llama.cpp (best)', 'ours prompt tok/s', 'llama.cpp prompt tok/s', 'step ms ours / llama.cpp (best rep, median step)', 'load avg'],
    rows,
  );
}

export function targetsTable(targets: readonly TargetCheck[]): string {
  return mdTable(
    ['target', 'model', 'threshold', 'measured', 'verdict'],
    targets.map((t) => [t.description, t.model, t.threshold, t.measured, verdict(t)]),
    ['l', 'l', 'l', 'l', 'l'],
  );
}

// ---------------------------------------------------------------------------------------------
// Chart

export function chartPanels(report: Pick<SpeedupReport, 'models' | 'settings'>, boundAt: (model: string, r: number) => number | undefined): ChartPanel[] {
  const panels: ChartPanel[] = [];
  for (const s of report.models) {
    for (const c of report.settings.concurrency) {
      const series = report.settings.strategies.map((strategy) => ({
        strategy,
        points: [
          { x: 0, y: 1, yServer: null, label: 'dense' },
          ...s.variants
            .filter((v) => v.strategy === strategy && !v.error)
            .flatMap((v) => {
              const m = measurementAt(v, c);
              return m?.ratio ? [{ x: v.achieved, y: m.ratio.clientP50, yServer: m.ratio.serverMean, label: v.id }] : [];
            }),
        ],
      }));
      const profile = s.profiles.find((p) => p.batch === c) ?? s.profiles.find((p) => p.batch === 1);
      const references: NonNullable<ChartPanel['references']> = [];
      if (boundAt(s.model, 0) !== undefined) references.push({ label: 'bound from param counts (LM head kept)', f: (r) => boundAt(s.model, r) ?? Number.NaN, dash: '2 3' });
      if (profile) references.push({ label: 'decode-step profile', f: (r) => profileRatio(profile, r), dash: '8 3 2 3' });
      const target = c === TARGETS.c1.concurrency ? TARGETS.c1 : c === TARGETS.c8.concurrency ? TARGETS.c8 : undefined;
      panels.push({
        title: `${s.model}, concurrency ${c}`,
        series,
        ...(target && { target: { x: TARGETS.compression, y: target.ratio, label: `target ≤ ${target.ratio}` } }),
        references,
      });
    }
  }
  return panels;
}
