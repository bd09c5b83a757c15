/**
 * The report's section on the pruned model in llama.cpp: the MoP variant exported to GGUF
 * (scripts/bench-llamacpp.ts --pruned) beside the dense file, both engines at the same weights and
 * threads. A decode step at batch 1 is bandwidth-bound, so its time ratio pruned / dense is bounded
 * below by the ratio of weight bytes a step reads (the files' tensors, the token embedding's gather
 * aside): the closer an engine comes to that bound, the more of pruning's saving it turns into time.
 */
import type { PeerReport, PeerRun } from './llamacpp-peer.ts';
import { fmt, mdTable } from './report.ts';

/** Decode time ratio pruned / dense of one engine at one thread count (best repetitions; medians). */
function decodeRatio(dense: PeerRun | undefined, pruned: PeerRun, engine: 'ours' | 'llamacpp'): { best: number; median: number } | undefined {
  const d = dense?.[engine];
  const p = pruned[engine];
  if (!d || !p) return undefined;
  return { best: d.best.decodeTokensPerSec / p.best.decodeTokensPerSec, median: d.medianDecodeTokensPerSec / p.medianDecodeTokensPerSec };
}

export interface PrunedPeerRow {
  model: string;
  quant: string;
  threads: number;
  bound: number | undefined;
  llamacpp: { best: number; median: number } | undefined;
  ours: { best: number; median: number } | undefined;
}

/** One row per pruned file and thread count, beside the dense file of the same run and weights. */
export function prunedPeerRows(peer: Pick<PeerReport, 'pruned'>): PrunedPeerRow[] {
  const rows: PrunedPeerRow[] = [];
  for (const { dense, pruned: p } of peer.pruned ?? []) {
    const bound = dense.gguf?.readBytes && p.gguf?.readBytes ? p.gguf.readBytes / dense.gguf.readBytes : undefined;
    for (const run of p.runs) {
      const d = dense.runs.find((r) => r.threads === run.threads);
      rows.push({ model: p.model, quant: (p.quant ?? 'f32').toUpperCase(), threads: run.threads, bound, llamacpp: decodeRatio(d, run, 'llamacpp'), ours: decodeRatio(d, run, 'ours') });
    }
  }
  return rows;
}

const pair = (r: { best: number; median: number } | undefined) => (r ? `${fmt.ratio(r.best)} / ${fmt.ratio(r.median)}` : '–');
const gap = (r: { best: number } | undefined, bound: number | undefined) => (r && bound !== undefined ? `${r.best - bound >= 0 ? '+' : ''}${(r.best - bound).toFixed(3)}` : '–');

/**
 * On a busy machine these ratios are noise; the section says so rather than let them judge the
 * bound. The benchmark's own threads count in the load average (up to one per core), so only
 * load beyond the cores and half a core more is someone else's.
 */
function busyNote(peer: PeerReport): string[] {
  const loads = (peer.pruned ?? []).flatMap((p) => [...p.dense.runs, ...p.pruned.runs].flatMap((r) => r.loadAvg));
  const cores = peer.machine.cores;
  if (loads.length === 0) return [];
  const range = `load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)} on ${cores} cores`;
  const threads = Math.max(...peer.threads);
  if (Math.max(...loads) <= cores + 0.5) {
    return [
      `Measured on an otherwise idle machine (${range}, the benchmark's own threads included). At ${threads} threads llama.cpp's threads, which spin at every barrier, share every core with the operating system and our idle engine, so its ${threads}-thread medians swing between repetitions; the 1-thread rows are the ones to judge the bound by.`,
      '',
    ];
  }
  return [
    `Measured while the machine was busy (${range}): a ratio under the bound is noise, and llama.cpp's threads, which spin at every barrier, stall whenever another process holds a core (its tok/s at ${threads} threads in the runs behind these rows collapse), so these rows do not judge the bound. Rerun on an idle machine: \`npm run bench:llamacpp -- --models 100m,500m --quants q8_0,q4_0\`, then \`npm run bench:speedup -- --render-only docs/speedup-report.json --pruned-peer-json bench-out/speedup/llamacpp.json\`.`,
    '',
  ];
}

/** The section, or nothing when the peer run had no pruned variant. */
export function prunedPeerSection(peer: PeerReport | null | undefined): string[] {
  const rows = peer?.available ? prunedPeerRows(peer) : [];
  if (rows.length === 0) return [];
  return [
    '## llama.cpp running the pruned model',
    '',
    'Each model pruned with MoP to the target its name ends with (float32 passes on a small calibration set, no recovery: the shapes set the speed; see the commands at the top), exported with `mop export`\'s writer (`deci` GGUF with per-layer shapes, widths padded to whole 32-value blocks) and run by llama.cpp beside the dense file; ours runs the same pruned file read back (its own Q8_0 / Q4_0 blocks). Decode time ratio = dense decode tok/s ÷ pruned decode tok/s; bound = weight bytes a pruned step reads ÷ a dense one\'s (the files\' tensors, the token embedding\'s gather aside).',
    '',
    ...busyNote(peer!),
    mdTable(
      ['pruned model', 'weights', 'threads', 'weights-read bound', 'llama.cpp pruned / dense (best / median)', 'llama.cpp − bound', 'ours pruned / dense (best / median)', 'ours − bound'],
      rows.map((r) => [r.model, r.quant, String(r.threads), fmt.ratio(r.bound), pair(r.llamacpp), gap(r.llamacpp, r.bound), pair(r.ours), gap(r.ours, r.bound)]),
    ),
    '',
  ];
}
