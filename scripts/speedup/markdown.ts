/**
 * docs/speedup-report.md from the report object: summary and targets, method, per-model tables,
 * the decode-step profile, the llama.cpp peer, the client/server agreement, and a closing note
 * whose causes are computed from the measurements (not written by hand).
 */
import { LATENCY_BUCKETS } from '../../src/server/metrics.ts';
import { profileRatio } from './decode-profile.ts';
import { prunedPeerSection } from './peer-pruned.ts';
import { decomposeRatio, engineSplit, engineTable, findVariant, fmt, latencyTable, type ModelSection, peerTable, profileTable, serverTable, type SpeedupReport, TARGETS, targetsTable, type VariantResult, variantsTable } from './report.ts';
import { median } from '../lib/stats.ts';
import { compressionForRatio, modelAnalysis, ratioAt } from './model-analysis.ts';

export { compressionForRatio };


function agreementSummary(r: SpeedupReport): string[] {
  const tol = fmt.pct(r.settings.tolerance, 0);
  const out: string[] = [];
  let allAgree = true;
  for (const s of r.models) {
    const ms = s.variants.flatMap((v) => v.measurements.map((m) => ({ v, m })));
    const ratioPairs = ms.filter((x) => x.m.agreement.ratio);
    const agreeing = ratioPairs.filter((x) => x.m.agreement.ratio!.agree);
    const worst = ratioPairs.reduce<{ d: number; at: string }>((w, x) => (x.m.agreement.ratio!.relDiff > w.d ? { d: x.m.agreement.ratio!.relDiff, at: `${x.v.id} c=${x.m.concurrency}` } : w), { d: 0, at: '–' });
    const abs = ms.filter((x) => x.m.agreement.e2eMean);
    const absAgree = abs.filter((x) => x.m.agreement.e2eMean!.agree);
    const gap = median(ms.flatMap((x) => (x.m.client.e2e && x.m.server.e2e ? [x.m.client.e2e.mean - x.m.server.e2e.mean] : [])));
    const ttftGap = median(ms.flatMap((x) => (x.m.client.ttft && x.m.server.ttft ? [x.m.client.ttft.mean - x.m.server.ttft.mean] : [])));
    const e2e = median(ms.flatMap((x) => (x.m.server.e2e ? [x.m.server.e2e.mean] : [])));
    if (agreeing.length !== ratioPairs.length) allAgree = false;
    out.push(
      `- ${s.model}: latency ratios from the client and from the server's histograms agree within ${tol} in **${agreeing.length} of ${ratioPairs.length}** cases (largest difference ${fmt.pct(worst.d)}, ${worst.at}). ` +
        `Absolute mean e2e agrees in ${absAgree.length} of ${abs.length}: the client sees a median ${fmt.ms(gap)} ms more per request than the server (${fmt.ms(ttftGap)} ms of it already at the first token: request parsing, tokenization, the load generator sharing the server's process and event loop), against a median request of ${fmt.ms(e2e)} ms.`,
    );
  }
  out.push(
    allAgree
      ? '- **Client and server agree** on every latency ratio. A per-request constant on the client side (HTTP, SSE) pulls the client ratio slightly towards 1 where requests are short.'
      : '- **Not every ratio agrees** within the tolerance: see the rows marked NO. A per-request constant on the client side (HTTP, SSE) pulls the client ratio towards 1 where requests are short.',
    `- Server p50/p99 are interpolated inside histogram buckets (bounds ${LATENCY_BUCKETS.filter((b) => b >= 0.01 && b <= 10).join(', ')} s), so they are only as precise as the bucket that holds them (anything between 1 and 2.5 s is one bucket); they are shown, but the agreement verdict uses the exact means.`,
  );
  return out;
}

function peerAnalysis(r: SpeedupReport): string[] {
  const out: string[] = [];
  if (!r.peer || !r.peer.available) {
    out.push(`- The llama.cpp peer did not run: ${r.peer?.reason ?? r.peerError ?? 'unknown reason'}.`);
    return out;
  }
  // Bytes per weight a step streams: F32 4; Q8_0 / int8 34 per 32 (codes + f16 scale); Q4_0 / int4 18 per 32.
  const bytesPerWeight = { f32: 4, q8_0: 34 / 32, q4_0: 18 / 32 } as const;
  for (const pm of r.peer.models) {
    const s = r.models.find((m) => m.model === pm.model);
    const quant = pm.quant ?? 'f32';
    const run = pm.runs[0];
    if (!s || !run?.ours || !run.llamacpp) continue;
    const ours = run.ours.best;
    const theirs = run.llamacpp.best;
    const bytes = (s.dense.blocks + s.dense.lmHead) * bytesPerWeight[quant];
    const gbps = (ms: number) => bytes / (ms / 1000) / 1e9;
    out.push(
      `- ${s.model} ${quant.toUpperCase()}, ${run.threads} threads: ours ${fmt.rate(ours.decodeTokensPerSec)} vs llama.cpp ${fmt.rate(theirs.decodeTokensPerSec)} decode tok/s (best repetitions; medians ${fmt.rate(run.ours.medianDecodeTokensPerSec)} vs ${fmt.rate(run.llamacpp.medianDecodeTokensPerSec)}). ` +
        `A step reads ${(bytes / 1e6).toFixed(0)} MB of ${quant.toUpperCase()} weights: effective ${gbps(ours.medianStepMs).toFixed(1)} GB/s ours vs ${gbps(theirs.medianStepMs).toFixed(1)} GB/s llama.cpp (median step ${fmt.ms(ours.medianStepMs)} vs ${fmt.ms(theirs.medianStepMs)} ms).`,
    );
    const other = pm.runs.slice(1);
    for (const o of other) {
      if (!o.ours || !o.llamacpp) continue;
      out.push(`  At ${o.threads} thread(s): ours ${fmt.rate(o.ours.best.decodeTokensPerSec)} vs llama.cpp ${fmt.rate(o.llamacpp.best.decodeTokensPerSec)} tok/s.`);
      if (o.llamacpp.best.decodeTokensPerSec > 1.2 * theirs.decodeTokensPerSec) {
        out.push(
          `  llama.cpp is ${(o.llamacpp.best.decodeTokensPerSec / theirs.decodeTokensPerSec).toFixed(1)}× faster with ${o.threads} thread(s) than with ${run.threads}: with all ${run.threads} threads it synchronises after every op with spinning barriers, so whenever another process holds a core (load average ${run.loadAvg.map((x) => x.toFixed(2)).join(' → ')} on ${r.machine.cores} cores) each op waits for a descheduled thread. On this shared machine the ${o.threads}-thread row is the fairer comparison.`,
        );
      }
    }
    const spread = (e: NonNullable<typeof run.ours>) => e.best.decodeTokensPerSec / Math.max(1e-9, e.medianDecodeTokensPerSec);
    if (spread(run.llamacpp) > 1.5 || spread(run.ours) > 1.5) {
      out.push(
        `  Repetitions varied widely (best/median ${spread(run.ours).toFixed(1)}× ours, ${spread(run.llamacpp).toFixed(1)}× llama.cpp; load average ${run.loadAvg.map((x) => x.toFixed(2)).join(' → ')} on ${r.machine.cores} cores): ` +
          `other processes were using the CPU. llama.cpp's threads synchronise after every op with spin-waiting barriers, so one descheduled thread stalls the whole step, which is why its median falls far more than ours under contention (ONNX Runtime's idle threads ${r.machine.ortSpin ? 'spin here too: --ort-spin on' : 'sleep here: --ort-spin off'}). The best repetitions are the fair comparison.`,
      );
    }
  }
  return out;
}

/** "100m: 8% at c=1, 12% at c=8; bundled: ..." — dense's outside-engine share of latency (first batch). */
function outsideShares(r: SpeedupReport): string {
  return r.models
    .map((s) => {
      const parts = r.settings.concurrency.flatMap((c) => {
        const m = s.variants.find((v) => v.strategy === 'dense')?.measurements.find((x) => x.concurrency === c);
        const x = m && engineSplit(m);
        return x ? [`${fmt.pct(x.outsideMs / (x.engineMs + x.outsideMs), 0)} at c=${c}`] : [];
      });
      return parts.length ? `${s.model} ${parts.join(', ')}` : '';
    })
    .filter(Boolean)
    .join('; ');
}

/** Where MoP landed against depth-only and width-only at the target compression, per model and concurrency (computed). */
function selectionText(r: SpeedupReport): string {
  const parts: string[] = [];
  for (const s of r.models) {
    const vs = (['mop', 'depth', 'width'] as const).map((k) => findVariant(s, k, TARGETS.compression));
    if (vs.some((v) => !v)) continue;
    const mop = vs[0]!;
    for (const c of r.settings.concurrency) {
      const at = vs.map((v) => v!.measurements.find((m) => m.concurrency === c)?.ratio?.clientP50 ?? Number.NaN);
      if (at.some((x) => !Number.isFinite(x))) continue;
      const best = Math.min(...at);
      const bestName = (['mop', 'depth', 'width'] as const)[at.indexOf(best)];
      parts.push(`${s.model} c=${c}: MoP ${fmt.ratio(at[0])} (${mop.steps.depth} depth / ${mop.steps.width} width steps), depth-only ${fmt.ratio(at[1])}, width-only ${fmt.ratio(at[2])}${bestName === 'mop' ? ' — MoP lowest' : ` — ${bestName}-only lowest`}`);
    }
  }
  return parts.length ? `In this run at ${fmt.pct(TARGETS.compression, 0)}: ${parts.join('; ')}.` : '';
}

/** MoP's decomposition at the target compression for one model and concurrency (null without data). */
function mopDecomposition(s: ModelSection, c: number) {
  const mop = findVariant(s, 'mop', TARGETS.compression);
  const prof = s.profiles.find((p) => p.batch === c);
  const mm = mop?.measurements.find((m) => m.concurrency === c);
  const dm = mop ? s.variants.find((v) => v.strategy === 'dense' && v.batch === mop.batch)?.measurements.find((m) => m.concurrency === c) : undefined;
  return mop && prof && mm && dm ? decomposeRatio(dm, mm, prof.head.medianMs, 1 - mop.achieved) : null;
}

/** "100m +0.068 at c=1, +0.060 at c=8" for one component of the decomposition. */
function component(r: SpeedupReport, models: ModelSection[], key: 'head' | 'blocks' | 'outside'): string {
  return models
    .map((s) => {
      const parts = r.settings.concurrency.flatMap((c) => {
        const d = mopDecomposition(s, c);
        return d ? [`${d[key] >= 0 ? '+' : '−'}${Math.abs(d[key]).toFixed(3)} at c=${c}`] : [];
      });
      return parts.length ? `${s.model} ${parts.join(', ')}` : '';
    })
    .filter(Boolean)
    .join('; ');
}

function fixes(r: SpeedupReport, bound1b: number | undefined): string[] {
  const missed = r.targets.filter((t) => t.met === false);
  const out: string[] = [];
  const big = r.models.filter((s) => s.model !== 'bundled');
  if (missed.some((t) => t.id !== 'decode-vs-llamacpp')) {
    const shares = big.map((s) => {
      const head = s.dense.lmHead;
      const blocks = s.dense.blocks;
      const share = s.paramBound.lmHeadShare;
      const int8 = (head / 4 + (1 - TARGETS.compression) * blocks) / (head / 4 + blocks);
      const need = (1 - TARGETS.c1.ratio) / (1 - share);
      return `${s.model}: the head is ${fmt.pct(share, 0)} of the weights a step reads, so 40% block compression is at best ${fmt.ratio(s.paramBound.ratioAt[String(TARGETS.compression)])} by parameter count, ${TARGETS.c1.ratio} needs ≥ ${fmt.pct(need, 0)} block compression, and an int8 head in dense and pruned alike would only move the bound to ${fmt.ratio(int8)}`;
    });
    out.push(
      `- **The LM head and fixed per-step cost** (measured share of MoP's ratio above the ideal: ${component(r, r.models, 'head') || 'not measured'}). Block pruning cannot touch the head (${shares.join('; ') || 'see above'}${bound1b !== undefined ? `; in the 1b preset the bound is still ${fmt.ratio(bound1b)}` : ''}). ` +
        'What would fix it: let pruning reach the head — count it in the compression budget and shrink it (prune the vocabulary to the tokens the traffic uses, a low-rank head): removing 40% of *all* the weights a step reads gives ≈ 0.60 by construction. Otherwise the 40% point must move: the tables show the ratio at 60%.',
      `- **The shapes MoP chose** (blocks slower than their parameter share: ${component(r, r.models, 'blocks') || 'not measured'}). MoP compares candidates by calibration loss per removed parameter, not by latency. ${selectionText(r)} What would fix it: score candidates by loss per removed *millisecond* (a step profile per candidate shape, as measured here), so MoP's choices land where the latency is.`,
      `- **Time outside the engine** (sampling, scheduling, HTTP/SSE; ${component(r, r.models, 'outside') || 'not measured'}) is the same for every variant: it is ${outsideShares(r) || 'not measured'} of dense latency. It caps the ratio of small models (the bundled model is overhead-bound). What would fix it: make the per-token work outside the engine cheaper, so the ratio follows the engine time.`,
    );
  }
  const peerShaky = r.targets.filter((t) => t.id.startsWith('decode-vs-llamacpp') && (t.met === false || t.robust === false));
  if (peerShaky.length) {
    out.push(
      `- **Decode GEMV speed** (${peerShaky.map((t) => `${t.model}: ${t.met ? 'met, but ' : 'missed; '}${t.note || 'see the peer table'}`).join('; ')}). At batch 1 a decode step is matrix-vector products: bandwidth-bound (see the effective GB/s above). With F32, llama.cpp's SIMD kernels stream the weights faster than ONNX Runtime's MatMul at M=1; with Q8_0 its hand-written int8 dot products beat MatMulNBits (accuracy_level 4: the activations are quantized per block on every call, and the kernel reaches a lower share of the memory bandwidth). What would fix it: fewer, larger kernels per step (fused QKV already; gate+up fused into one MatMulNBits) and a GEMV path that reads the weights once at full bandwidth — or our own kernel for M=1.`,
    );
  }
  if (out.length === 0) out.push('- All measured targets were met, outside the noise of this run.');
  return out;
}

interface MarkdownFiles {
  svgFile: string;
  jsonFile: string;
  bound1b: number | undefined;
}

/** Title, where the report came from, the machine, the chart. */
function headerSection(r: SpeedupReport, o: MarkdownFiles): string[] {
  const L: string[] = [];
  L.push('# Speedup under real traffic: pruned variants vs dense, side by side');
  L.push('');
  L.push(`Generated by \`${r.command}\` (scripts/bench-speedup.ts) on ${r.date.slice(0, 10)} in ${(r.durationSec / 60).toFixed(1)} min; do not edit by hand. Data: [${o.jsonFile}](${o.jsonFile}); chart: [${o.svgFile}](${o.svgFile}).`);
  if (r.runs) {
    L.push('');
    L.push(`Merged from ${r.runs.length} runs (\`scripts/bench-speedup.ts --render-only A.json,B.json\`); the Method section gives the first run's settings:`);
    L.push('');
    for (const x of r.runs) L.push(`- \`${x.command}\` on ${x.date.slice(0, 16).replace('T', ' ')} UTC, ${(x.durationSec / 60).toFixed(1)} min, weights ${x.dtype}, load average ${x.loadAvgStart[0]?.toFixed(2)} at its start: ${x.models.join(', ')}`);
  }
  L.push('');
  const before = r.machine.loadAvgStart[0]!;
  L.push(
    `- Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memGiB.toFixed(0)} GiB, ${r.machine.platform}, Node ${r.machine.node}; ONNX Runtime CPU with ${r.machine.threads} intra-op threads per variant (idle pool threads ${r.machine.ortSpin ? 'spinning: --ort-spin on' : 'sleeping: --ort-spin off'}); weights ${r.settings.dtype && r.settings.dtype !== 'float32' ? `${r.settings.dtype} (MatMulNBits blocks of 32 for every projection and the LM head; activations and KV cache float32)` : 'float32'}. ` +
      `Load average (1 min) before the run: ${before.toFixed(2)}${before > r.machine.cores * 0.5 ? ` — **other processes were using the CPU (the machine is shared); absolute figures are noisy, the interleaved ratios much less so (see the per-round spread)**` : ''}. During the run the load average includes this benchmark's own ${r.machine.threads} busy threads.`,
  );
  if (r.settings.quick) L.push('- **Quick smoke run** (`--quick`): few requests, short generations; the figures are not the benchmark.');
  L.push('');
  L.push(`![End-to-end latency ratio vs compression, per strategy and concurrency](${o.svgFile})`);
  L.push('');
  return L;
}

/** The targets met or missed, and how noisy the verdicts are. */
function targetsSection(r: SpeedupReport): string[] {
  const L: string[] = [];
  L.push('## Targets');
  L.push('');
  L.push(targetsTable(r.targets));
  L.push('');
  const missed = r.targets.filter((t) => t.met === false);
  L.push(missed.length ? `**${missed.length} of ${r.targets.filter((t) => t.met !== null).length} measured targets missed**: ${missed.map((t) => `${t.model} ${t.id}`).join(', ')}. The closing note gives the measured cause.` : 'All measured targets were met.');
  const shaky = r.targets.filter((t) => t.robust === false);
  if (shaky.length) {
    L.push('');
    L.push(`Verdicts within this run's noise: ${shaky.map((t) => `${t.model} ${t.id} (${t.note})`).join('; ')}. On a shared machine such a verdict can flip between runs.`);
  }
  const spreads = r.models.flatMap((s) =>
    r.settings.concurrency.flatMap((c) => {
      const p = s.variants.filter((v) => v.strategy === 'dense').flatMap((v) => {
        const x = v.measurements.find((m) => m.concurrency === c)?.client.e2e?.p50;
        return x !== undefined && Number.isFinite(x) ? [x] : [];
      });
      return p.length > 1 ? [`${s.model} c=${c}: ${p.map((x) => fmt.ms(x)).join(' / ')} ms`] : [];
    }),
  );
  if (spreads.length) {
    L.push('');
    L.push(`Dense was measured once per batch; its e2e p50 across the batches (same load, minutes apart): ${spreads.join('; ')}. That spread is the run-to-run noise of this machine, against which the ratios should be read.`);
  }
  L.push('');
  return L;
}

/** How the figures were measured. */
function methodSection(st: SpeedupReport['settings']): string[] {
  const L: string[] = [];
  L.push('## Method');
  L.push('');
  L.push(
    `- One server per model, in process on 127.0.0.1 (the real \`startServer\`: HTTP, scheduler, metrics), dense model served as \`dense\`, admin API on. Variants pruned through \`POST /admin/prune\` (strategies ${st.strategies.join(', ')}; targets ${st.ratios.map((x) => fmt.pct(x, 0)).join(', ')}; calibration ${st.samples} × ${st.seqLen} tokens of the bundled TinyStories slice; \`activate: false\`) and served side by side with the dense one, routed by the request's \`model\` field.`,
  );
  L.push(
    `- At most ${st.maxLoaded} pruned variants are loaded at once: variants are measured in batches (grouped by target), each batch with its own dense measurement, then unloaded (\`DELETE /admin/models/{id}\`). Each variant's ratio uses the dense measured in its batch.`,
  );
  L.push(
    `- Identical load for every variant: the Node load generator (\`loadtest/\`), closed model, streaming, \`ignore_eos: true\`, \`max_tokens: ${st.maxTokens}\`, temperature 0, prompts from \`${st.promptsFile}\` (${st.promptCount} prompts, round-robin, the same prompt sequence for every variant). Requests per variant: ${Object.entries(st.requests).map(([c, n]) => `${n} at concurrency ${c}`).join(', ')}, ${st.rounds === 'auto' ? `split into rounds of one wave each (c requests per round: ${Object.entries(st.requests).map(([c, n]) => `${Math.ceil(n / Number(c))} rounds at concurrency ${c}`).join(', ')})` : `split into ${st.rounds} rounds`}; within a round every model of the batch runs in turn, in alternating order (A B C, C B A, …), so that drift in background load hits dense and pruned alike. Each variant gets warm-up requests before measuring.`,
  );
  L.push(
    '- Ratios: pruned / dense e2e p50 over all requests (the headline), the same with means, and per round (the variant\'s mean e2e over dense\'s in the same round, run back to back): the median and range of those pairs show how much background load moved the result. The variant\'s ModelSession is also timed from inside the server during the runs (prefill and decode calls wrapped), which splits each request\'s latency into engine time and time outside the engine in the same run.',
    '- Client side: e2e (request sent → last byte), TTFT (first non-empty chunk), TPOT ((e2e − TTFT) / (tokens − 1)), output tokens/s over the load. Server side: `mop_e2e_request_latency_seconds`, `mop_time_to_first_token_seconds`, `mop_time_per_output_token_seconds` (label `model`), scraped from `/metrics` before and after every load run; mean = Δsum/Δcount, p50/p99 = `histogram_quantile` on Δbuckets. The headline ratio is the client p50 e2e ratio; the server ratio is the ratio of exact means.',
  );
  L.push(
    "- Decode-step profile: ModelSession alone (no server), the dense model vs a copy with one empty layer (embedding, final norm, LM head only) vs the same with a 256-token vocabulary (overhead only); median of timed steps after warm-up. llama.cpp peer: the dense model exported with `writeGguf` (F32, and Q8_0 / Q4_0: the very blocks our int8 / int4 graphs run), run by node-llama-cpp's prebuilt CPU binary with its threads pinned (all cores, then 1), alternating repetitions with ours at the same quantization (see the peer section).",
  );
  L.push('');
  return L;
}

/** One model: its variants, the tables at each concurrency, the decode-step profile. */
function modelSection(r: SpeedupReport, s: ModelSection): string[] {
  const L: string[] = [];
  L.push(`## ${s.model}`);
  L.push('');
  L.push(
    `${s.shape}; ${fmt.params(s.dense.total)} parameters (blocks ${fmt.params(s.dense.blocks)}, embedding/norm/head ${fmt.params(s.dense.embeddings)}); context ${s.context} per slot; ${(s.wallSec / 60).toFixed(1)} min; load average during the load runs ${s.loadAvg.map((x) => (Number.isFinite(x) ? x.toFixed(2) : '–')).join('–')} on ${r.machine.cores} cores (this benchmark included).${s.budget === 'latency' ? ' **Pruned with `--budget latency`**: each target is a share of decode-step time (from the engine\'s own profile); the variants table gives the parameter compression each came to.' : ''}${s.error ? ` **Error: ${s.error}**` : ''}`,
  );
  L.push('');
  L.push('### Variants');
  L.push('');
  L.push(variantsTable(s));
  L.push('');
  for (const c of r.settings.concurrency) {
    L.push(`### Concurrency ${c}: client side, ratios vs dense`);
    L.push('');
    L.push(latencyTable(s, c));
    L.push('');
    L.push(`Where the time went in the same runs (the variant's ModelSession timed inside the server; per request = run time × ${c} / requests; outside engine = sampling, scheduling, HTTP/SSE, idle):`);
    L.push('');
    L.push(engineTable(s, c));
    L.push('');
    L.push(`<details><summary>Concurrency ${c}: server-side histograms</summary>`);
    L.push('');
    L.push(serverTable(s, c));
    L.push('');
    L.push('</details>');
    L.push('');
  }
  if (s.profiles.length) {
    L.push('### Where a decode step goes');
    L.push('');
    L.push(profileTable(s, r.settings.ratios));
    L.push('');
  }
  return L;
}

/** The llama.cpp peer table. */
function peerSection(r: SpeedupReport): string[] {
  const L: string[] = [];
  L.push('## llama.cpp peer (dense, batch 1)');
  L.push('');
  if (r.peer?.available) {
    L.push(
      `node-llama-cpp ${r.peer.peer?.version} (${r.peer.peer?.binary} CPU binary, ${r.peer.peer?.llamaCppRelease}), installed on demand into \`.peer/\`; ${r.peer.promptTokens}-token prompt, ${r.peer.tokens} greedy tokens, ${r.peer.reps} repetitions per engine, alternating. llama.cpp system info: \`${r.peer.peer?.systemInfo}\`.`,
    );
    L.push('');
    L.push(peerTable(r.peer));
    if (r.peerExtra?.length) {
      L.push('');
      L.push(`Rows measured in separate runs of \`scripts/bench-llamacpp.ts\`, merged here: ${r.peerExtra.join('; ')}.`);
    }
  } else L.push(`The peer did not run: ${r.peer?.reason ?? r.peerError ?? 'unknown'}.`);
  L.push('');
  return L;
}

/** Client vs server agreement, then the closing note: measured causes and fixes. */
function closingSection(r: SpeedupReport, o: MarkdownFiles): string[] {
  const L: string[] = [];
  L.push('## Client vs server');
  L.push('');
  L.push(...agreementSummary(r));
  L.push('');
  L.push('## Closing note: measured causes and fixes');
  L.push('');
  for (const s of r.models) {
    L.push(...modelAnalysis(r, s));
    L.push('');
  }
  if (o.bound1b !== undefined && !r.models.some((m) => m.model === '1b')) {
    L.push(`For scale: in the \`1b\` preset (not measured in this run: \`--models 1b\`) the LM head is a much smaller share of the weights, yet its parameter bound at ${fmt.pct(TARGETS.compression, 0)} is still ${fmt.ratio(o.bound1b)}.`);
    L.push('');
  }
  L.push('llama.cpp:');
  L.push('');
  L.push(...peerAnalysis(r));
  L.push('');
  L.push('What would fix the misses:');
  L.push('');
  L.push(...fixes(r, o.bound1b));
  L.push('');
  return L;
}

export function renderMarkdown(r: SpeedupReport, o: MarkdownFiles): string {
  return [...headerSection(r, o), ...targetsSection(r), ...methodSection(r.settings), ...r.models.flatMap((s) => modelSection(r, s)), ...peerSection(r), ...prunedPeerSection(r.peer), ...closingSection(r, o)].join('\n');
}

