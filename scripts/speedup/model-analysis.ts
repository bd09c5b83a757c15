/**
 * The per-model analysis paragraphs of docs/speedup-report.md: MoP's measured ratios against what
 * parameter arithmetic allows, the decode-step profile, the same-run comparison, where the block
 * time goes, and the ranking of the ~40% variants. Every sentence is computed from the report.
 */
import { profileRatio } from './decode-profile.ts';
import { decomposeRatio, engineSplit, findVariant, fmt, type ModelSection, type SpeedupReport, TARGETS, type VariantResult } from './report.ts';

/** Compression at which the profile predicts `ratio` (may exceed 1: unreachable by block pruning). */
export function compressionForRatio(p: { blocksMs: number; lmHeadMs: number; overheadMs: number }, ratio: number): number {
  const dense = p.blocksMs + p.lmHeadMs + p.overheadMs;
  return p.blocksMs > 0 ? 1 - (ratio * dense - p.overheadMs - p.lmHeadMs) / p.blocksMs : Number.POSITIVE_INFINITY;
}

/** What modelAnalysis's parts share: the model's section and its ~40% variants. */
interface AnalysisContext {
  s: ModelSection;
  mop: VariantResult | undefined;
  depth: VariantResult | undefined;
  width: VariantResult | undefined;
  /** MoP's achieved compression (the target where MoP did not run). */
  a: number;
  /** The highest concurrency measured. */
  cN: number;
}

/** A variant's client p50 latency ratio at concurrency c. */
export const ratioAt = (v: VariantResult | undefined, c: number) => v?.measurements.find((m) => m.concurrency === c)?.ratio?.clientP50;
/** The dense measurement at concurrency c that `v` was compared with (same batch). */
const denseMeasurementFor = (s: ModelSection, v: VariantResult, c: number) => s.variants.find((x) => x.strategy === 'dense' && x.batch === v.batch)?.measurements.find((m) => m.concurrency === c);
const loadNote = (p: { loadAvg?: [number, number] }) => (p.loadAvg ? `; load average ${p.loadAvg.map((x) => x.toFixed(2)).join(' → ')}` : '');

export function modelAnalysis(r: SpeedupReport, s: ModelSection): string[] {
  const mop = findVariant(s, 'mop', TARGETS.compression);
  const x: AnalysisContext = { s, mop, depth: findVariant(s, 'depth', TARGETS.compression), width: findVariant(s, 'width', TARGETS.compression), a: mop?.achieved ?? TARGETS.compression, cN: Math.max(...r.settings.concurrency) };
  return [...measuredLines(x), ...stepProfileLines(x), ...sameRunLines(x), ...blockTimeLines(x), ...rankingLines(x)];
}

/** The model, MoP's measured ratios, and what parameter arithmetic allows. */
function measuredLines({ s, mop, depth, width, cN }: AnalysisContext): string[] {
  const out: string[] = [];
  out.push(`**${s.model}** (${s.shape}; ${fmt.params(s.dense.total)} parameters, of which ${fmt.params(s.dense.blocks)} in blocks and a ${fmt.params(s.dense.lmHead)}-parameter LM head):`);
  if (mop) {
    out.push(
      `- Measured at ~${fmt.pct(TARGETS.compression, 0)}: MoP ${fmt.ratio(ratioAt(mop, 1))} (c=1) / ${fmt.ratio(ratioAt(mop, cN))} (c=${cN}); depth-only ${fmt.ratio(ratioAt(depth, 1))} / ${fmt.ratio(ratioAt(depth, cN))}; width-only ${fmt.ratio(ratioAt(width, 1))} / ${fmt.ratio(ratioAt(width, cN))}. ` +
        `MoP took ${mop.steps.depth} depth and ${mop.steps.width} width steps (${mop.layers} of ${s.dense.layers} layers kept)` +
        (s.model === 'bundled' ? '.' : '; with random weights its calibration scores are arbitrary, so the depth/width mix says nothing about real models, only the latency of the shapes it produced matters here.'),
    );
  }
  const bound = s.paramBound.ratioAt[String(TARGETS.compression)];
  out.push(
    `- Parameter arithmetic: ${fmt.pct(TARGETS.compression, 0)} of the block parameters removed gives an ideal ratio of ${(1 - TARGETS.compression).toFixed(2)} only if *everything* a request costs shrank with the blocks, so the ${TARGETS.c1.ratio} target leaves one point for all that does not. ` +
      `A decode step reads every block weight and the LM head (the embedding is only gathered); the head is ${fmt.pct(s.paramBound.lmHeadShare)} of those weights and pruning never removes it, so with step time exactly proportional to weights read the ratio at ${fmt.pct(TARGETS.compression, 0)} is at best **${fmt.ratio(bound)}**${bound !== undefined && bound > TARGETS.c1.ratio ? `, already above ${TARGETS.c1.ratio}` : ''}.`,
  );
  return out;
}

/** The decode-step profile at batch 1 and at the larger batch, and MoP's shape timed alone. */
function stepProfileLines({ s, mop, a }: AnalysisContext): string[] {
  const out: string[] = [];
  const p1 = s.profiles.find((p) => p.batch === 1);
  const pN = s.profiles.find((p) => p.batch !== 1);
  if (p1) {
    const need = compressionForRatio(p1, TARGETS.c1.ratio);
    out.push(
      `- Measured decode step at batch 1 (ModelSession alone, the three models interleaved step by step${loadNote(p1)}): dense ${fmt.ms(p1.dense.medianMs)} ms = blocks ${fmt.ms(p1.blocksMs)} ms + LM head ${fmt.ms(p1.lmHeadMs)} ms (**${fmt.pct(p1.lmHeadMs / p1.dense.medianMs, 0)}**) + fixed per-run overhead ${fmt.ms(p1.overheadMs)} ms. ` +
        `A model with no blocks at all would still take ${fmt.pct(p1.floorRatio, 0)} of the dense step. With block time ∝ block parameters this predicts ${fmt.ratio(profileRatio(p1, a))} at ${fmt.pct(a)} compression; reaching ${TARGETS.c1.ratio} would need ${need > 1 ? 'more than 100% (impossible by block pruning alone)' : `${fmt.pct(need, 0)} block compression`}.`,
    );
  }
  if (mop?.stepProfile) {
    const sp = mop.stepProfile;
    out.push(
      `- MoP's pruned shape timed alone (dense and it interleaved step by step, batch 1${loadNote(sp)}): ${fmt.ms(sp.variantMs)} vs ${fmt.ms(sp.denseMs)} ms per decode step = **${fmt.ratio(sp.ratio)}** against the weights-read bound ${fmt.ratio(sp.bound)} for its ${fmt.pct(mop.achieved)} compression: ` +
        (sp.ratio <= sp.bound + TARGETS.vsBound ? 'its blocks run at their parameter share (within the noise of this machine).' : `its blocks run ${fmt.pct(sp.ratio - sp.bound, 0)} of a dense step slower than their parameter share.`),
    );
  }
  if (pN) {
    const need = compressionForRatio(pN, TARGETS.c8.ratio);
    out.push(
      `- At batch ${pN.batch} (${loadNote(pN).slice(2) || 'same method'}) the step is ${fmt.ms(pN.dense.medianMs)} ms (blocks ${fmt.ms(pN.blocksMs)} ms, LM head ${fmt.ms(pN.lmHeadMs)} ms = ${fmt.pct(pN.lmHeadMs / pN.dense.medianMs, 0)}): the batch shares one read of the head, so the predicted ratio at ${fmt.pct(a)} is ${fmt.ratio(profileRatio(pN, a))}` +
        (pN.batch === TARGETS.c8.concurrency ? ` and ${TARGETS.c8.ratio} would need ${need > 1 ? 'more than 100%' : fmt.pct(need, 0)} block compression.` : '.'),
    );
  }
  return out;
}

/** Same-run decomposition: engine time vs time outside the engine, dense vs MoP. */
function sameRunLines({ s, mop, cN }: AnalysisContext): string[] {
  const out: string[] = [];
  for (const c of [...new Set([1, cN])]) {
    const mm = mop?.measurements.find((m) => m.concurrency === c);
    const dm = mop ? denseMeasurementFor(s, mop, c) : undefined;
    const x = mm && engineSplit(mm);
    const d = dm && engineSplit(dm);
    if (!x || !d || !dm?.server.tpot || !mm?.ratio) continue;
    out.push(
      `- Same run, c=${c} (engine timed inside the server): per request dense spends ${fmt.ms(d.engineMs)} ms in the engine (prefill ${fmt.ms(d.prefillMs)}, decode ${fmt.ms(d.decodeMs)}; mean step ${fmt.ms(d.meanStepMs)} ms at batch ${d.meanBatch.toFixed(1)}) and ${fmt.ms(d.outsideMs)} ms outside it; ` +
        `MoP-${Math.round(TARGETS.compression * 100)} ${fmt.ms(x.engineMs)} ms and ${fmt.ms(x.outsideMs)} ms. The engine time fell to **${fmt.ratio(x.engineMs / d.engineMs)}** of dense, the time outside it to ${fmt.ratio(x.outsideMs / d.outsideMs)}; ` +
        `outside-engine time is ${fmt.pct(d.outsideMs / (d.engineMs + d.outsideMs), 0)} of dense latency (per output token the server's TPOT exceeds the engine step by ${fmt.ms(dm.server.tpot.mean - d.meanStepMs)} ms: sampling over the vocabulary, scheduling, SSE${c > 1 ? ', and prefills of other requests between decode steps' : ''}).`,
    );
  }
  return out;
}

/** Block time inside the server (mean decode step minus the profile's head-only step), and MoP's mean ratio decomposed. */
function blockTimeLines({ s, mop, depth, width, a, cN }: AnalysisContext): string[] {
  const out: string[] = [];
  for (const c of [...new Set([1, cN])]) {
    const prof = s.profiles.find((p) => p.batch === c);
    if (!prof) continue;
    const parts: string[] = [];
    let denseBlocks = Number.NaN;
    for (const v of [mop, depth, width]) {
      if (!v) continue;
      const d = denseMeasurementFor(s, v, c);
      const m = v.measurements.find((x) => x.concurrency === c);
      const ds = d && engineSplit(d);
      const vs = m && engineSplit(m);
      if (!ds || !vs) continue;
      const bd = ds.meanStepMs - prof.head.medianMs;
      const bv = vs.meanStepMs - prof.head.medianMs;
      if (!(bd > 0)) continue;
      denseBlocks = bd;
      parts.push(`${v.strategy} ${fmt.ratio(bv / bd)}`);
    }
    if (parts.length) {
      const slower = parts.some((x) => Number(x.split(' ')[1]) > 1 - a + 0.03);
      out.push(
        `- Block time per decode step at c=${c} (mean in-server step minus the ${fmt.ms(prof.head.medianMs)} ms head-only step of the profile): dense ~${fmt.ms(denseBlocks)} ms; at ~${fmt.pct(TARGETS.compression, 0)} ${parts.join(', ')} of dense, for ${fmt.ratio(1 - a)} of the block parameters. ` +
          (slower
            ? 'Where this is above the parameter fraction, the remaining matrices do not run proportionally faster (per-layer work that does not scale with width, less efficient smaller GEMMs); depth removes whole layers, width narrows them, so the gap between the two is the measured effect of the shape.'
            : 'The blocks shrink at least in proportion to their parameters here; the gap to the ideal ratio lies outside them.'),
      );
    }
    const mm = mop?.measurements.find((m) => m.concurrency === c);
    const dm = mop ? denseMeasurementFor(s, mop, c) : undefined;
    const dec = mm && dm ? decomposeRatio(dm, mm, prof.head.medianMs, 1 - a) : null;
    if (dec) {
      const sgn = (x: number) => `${x >= 0 ? '+' : '−'} ${Math.abs(x).toFixed(3)}`;
      out.push(
        `- **Decomposition at c=${c}** (MoP-${Math.round(TARGETS.compression * 100)}, mean wall time per request): ${fmt.ratio(dec.ratio)} = ${fmt.ratio(dec.ideal)} (ideal: block parameters kept) ${sgn(dec.head)} (LM head and fixed per-step cost, never pruned) ${sgn(dec.blocks)} (blocks vs their parameter share) ${sgn(dec.outside)} (time outside the engine).`,
      );
    }
  }
  return out;
}

/** The three strategies ranked by latency at c=1 and the highest concurrency. */
function rankingLines({ mop, depth, width, cN }: AnalysisContext): string[] {
  if (!mop || !depth || !width) return [];
  return [1, cN].map((c) => {
    const ranked = [mop, depth, width].map((v) => ({ v, r: ratioAt(v, c) ?? Number.POSITIVE_INFINITY })).sort((x, y) => x.r - y.r);
    return `- Lowest latency at ~${fmt.pct(TARGETS.compression, 0)}, c=${c}: ${ranked.map((x) => `${x.v.strategy} ${fmt.ratio(x.r)}`).join(' < ')}.`;
  });
}
