/**
 * Pruning quality: held-out perplexity (and KL divergence to the dense model) of MoP vs depth-only
 * vs width-only at several compression targets on the bundled model, each without and with
 * recovery fine-tuning (the shared prune table's default recipe: every candidate recovered before
 * it is scored, a final recovery after the target; the baselines get the same budget), plus a
 * sweep of MoP's knobs (selection criterion, step budget, width split, importance) and of the
 * recovery knobs at one target (LoRA vs full, ce vs kd, per-candidate steps, depth rule, random
 * path). Calibration, recovery and held-out text are disjoint bundled slices (data/README.md).
 * Writes a Markdown report and its JSON — again after every recovered run, so a run stopped early
 * leaves a report of what it measured (it says which rows ran).
 *
 *   npm run bench:quality -- [--quick] [--targets 0.1,0.2,0.3,0.4,0.5] [--recovery-targets …] [--sweep-target 0.4]
 *                            [--samples 32] [--seq-len 128] [--seed 0] [--eval-seq-len 256] [--no-sweep]
 *                            [--no-recovery] [--model <path>] [--calibration <file>] [--heldout <file>]
 *                            [--out docs/quality-report.md]
 *   --quick: recovery only at 40% (all three strategies) and the recovery sweep at 40%; no knob sweep without recovery.
 *   --render-only: rewrite the report from its JSON (the rows an earlier run measured, its command), measuring nothing.
 *   --append: keep the JSON's rows and measure only the recovered runs it lacks (e.g. rows added to the sweep since).
 *   --uniform-targets 0.2,0.3,0.4,0.5: MoP with recovery, per-layer widths vs --uniform (every kept layer the
 *     same shape), both measured at each; --no-uniform skips them (so does --no-recovery).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openMaskedForward } from '../src/runtime/calibration/ort-masked-forward.ts';
import { toBatches } from '../src/runtime/calibration/token-batch.ts';
import { defaultModelPath, loadModel } from '../src/runtime/model/load.ts';
import { parameterCounts } from '../src/runtime/model/spec.ts';
import { createTokenizer } from '../src/runtime/tokenizer/create.ts';
import { defaultHeldoutPath, loadCalibration } from '../src/mop/calibration.ts';
import { batchKl, batchNll, textWindows } from '../src/mop/evaluate.ts';
import { fullPlan } from '../src/mop/pruning-plan.ts';
import type { ModelWeights } from '../src/mop/surgery.ts';
import { type MopOptions, runMop } from '../src/mop/mop.ts';
import type { PruneReport, Strategy } from '../src/mop/report.ts';
import { defaultPruneSettings, type PruneRecipe } from '../src/service/prune/prune-options.ts';
import { prepareRecovery } from '../src/service/prune/run-prune.ts';
import { memorySelfTextCache } from './lib/memory-self-text-cache.ts';
import { parseScriptArgs } from './lib/script-args.ts';
import { f, pct, type Row } from './quality/quality-rows.ts';
import { recoveryLines } from './quality/recovery-report.ts';
import { uniformLines, uniformVariants } from './quality/uniform-report.ts';

const args = parseScriptArgs(import.meta.url, {
  targets: { type: 'string', default: '0.1,0.2,0.3,0.4,0.5' },
  samples: { type: 'string', default: '32' },
  'seq-len': { type: 'string', default: '128' },
  seed: { type: 'string', default: '0' },
  'eval-seq-len': { type: 'string', default: '256' },
  'no-sweep': { type: 'boolean', default: false },
  quick: { type: 'boolean', default: false },
  'no-recovery': { type: 'boolean', default: false },
  'recovery-targets': { type: 'string' },
  'sweep-target': { type: 'string', default: '0.4' },
  'uniform-targets': { type: 'string', default: '0.2,0.3,0.4,0.5' },
  'no-uniform': { type: 'boolean', default: false },
  'render-only': { type: 'boolean', default: false },
  append: { type: 'boolean', default: false },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  model: { type: 'string' },
  calibration: { type: 'string' },
  heldout: { type: 'string' },
  out: { type: 'string', default: 'docs/quality-report.md' },
});
const targets = args.targets.split(',').map(Number);
const sweepTarget = Number(args['sweep-target']);
// Recovered runs take minutes each on 2 cores: 40% first, so a stopped run has the row that matters.
const recoveryTargets = args['no-recovery']
  ? []
  : (args['recovery-targets']?.split(',').map(Number) ?? (args.quick ? [sweepTarget] : [...targets].sort((a, b) => Math.abs(a - sweepTarget) - Math.abs(b - sweepTarget))));
const knobSweep = !args['no-sweep'] && !args.quick;
const uniformTargets = args['no-uniform'] || args['no-recovery'] ? [] : args['uniform-targets'].split(',').map(Number);
const recoverySweep = !args['no-sweep'] && !args['no-recovery'];
const samples = Number(args.samples);
const seqLen = Number(args['seq-len']);
const seed = Number(args.seed);
const threads = Number(args.threads);
const jsonOut = args.out.replace(/\.md$/, '') + '.json';
const prior = args['render-only'] || args.append ? (JSON.parse(fs.readFileSync(jsonOut, 'utf8')) as { command: string; rows: Row[] }) : undefined;
const thisCommand = `npm run bench:quality${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`;
const command = !prior ? thisCommand : args.append ? `${prior.command}\`, then \`${thisCommand}` : prior.command;
/** Measure recovered runs (all, or with --append only those the JSON lacks). */
const toMeasure = (variant: string, strategy: Strategy, target: number) =>
  !args['render-only'] && !(args.append && prior!.rows.some((r) => r.variant === variant && r.strategy === strategy && r.target === target));

const model = await loadModel(args.model ?? defaultModelPath());
const tokenizer = createTokenizer(model.tokenizer);
const calibration = await loadCalibration(tokenizer, { samples, seqLen, seed, ...(args.calibration !== undefined && { path: args.calibration }) });
const heldoutPath = args.heldout ?? defaultHeldoutPath();
const heldout = textWindows(tokenizer, fs.readFileSync(heldoutPath, 'utf8'), Number(args['eval-seq-len']));
const batches = toBatches(heldout.sequences);

/**
 * Held-out perplexity and mean KL(dense ‖ model) in one pass per model; the dense logits are
 * computed once (src/mop/evaluate.ts has the same measures as standalone functions).
 */
async function quality(m: ModelWeights, denseLogits?: Float32Array[]): Promise<{ perplexity: number; kl: number; tokens: number; logits: Float32Array[] }> {
  const forward = await openMaskedForward(m.spec, m.weights, { maxSeqLen: Number(args['eval-seq-len']), threads });
  const plan = fullPlan(m.spec);
  let nll = 0;
  let tokens = 0;
  let kl = 0;
  let positions = 0;
  const logits: Float32Array[] = [];
  for (const [k, b] of batches.entries()) {
    const out = (await forward.run(b, plan, { logits: true })).logits!;
    const r = batchNll(out, b, m.spec.vocabSize);
    nll += r.sum;
    tokens += r.count;
    if (denseLogits) kl += batchKl(denseLogits[k]!, out, b.rows * b.seqLen, m.spec.vocabSize);
    else logits.push(out);
    positions += b.rows * b.seqLen;
  }
  await forward.release();
  return { perplexity: Math.exp(nll / tokens), kl: kl / positions, tokens, logits };
}

const dense = await quality(model);
const denseBlocks = parameterCounts(model.spec).blocks;
process.stderr.write(`dense: held-out perplexity ${dense.perplexity.toFixed(3)} over ${dense.tokens} tokens; calibration ${samples}×${seqLen} (seed ${seed})\n`);

type Knobs = Partial<Pick<MopOptions, 'criterion' | 'stepLayers' | 'depthUnit' | 'depthRule' | 'widthSplit' | 'widthNormalize' | 'importance' | 'calibration' | 'seed' | 'uniform'>>;

/** The shared option table's defaults: what `mop prune` runs without flags. */
const tableDefaults = defaultPruneSettings();
/** Text sampled from the dense model for recovery: once for every prune of this run. */
const selfTextCache = memorySelfTextCache();

async function measure(variant: string, strategy: Strategy, target: number, knobs: Knobs = {}, recoveryOverrides?: Partial<PruneRecipe>): Promise<Row> {
  const recipe: PruneRecipe = { ...tableDefaults, ...recoveryOverrides, target };
  const recovery = recoveryOverrides ? await prepareRecovery(recipe, { tokenizer, model, threads, selfTextCache }) : undefined;
  const { model: pruned, report } = await runMop(model, {
    target,
    strategy,
    calibration,
    seed,
    threads,
    ...(recoveryOverrides && { criterion: recipe.criterion, depthRule: recipe.depthRule }),
    ...knobs,
    ...(recovery && { recovery }),
  });
  const q = await quality(pruned, dense.logits);
  const row: Row = {
    variant,
    strategy,
    target,
    ratio: report.result.ratio,
    perplexity: q.perplexity,
    kl: q.kl,
    calibrationScore: report.result.finalScore,
    path: pathOf(report),
    layers: shapeOf(report),
    wallMs: report.wallMs,
    ...(recoveryOverrides && { recovery: recoveryOverrides, recoverySeconds: report.recovery?.seconds ?? 0 }),
  };
  process.stderr.write(
    `${variant.padEnd(22)} ${strategy.padEnd(5)} ${(100 * target).toFixed(0)}%${recoveryOverrides ? ' +rec' : ''}: ppl ${row.perplexity.toFixed(3)} kl ${row.kl.toFixed(4)} path ${row.path} (${(row.wallMs / 1000).toFixed(1)} s${row.recoverySeconds !== undefined ? `, recovery ${row.recoverySeconds.toFixed(1)} s` : ''})\n`,
  );
  return row;
}

/** The branch taken at each step: D = depth, W = width. */
function pathOf(r: PruneReport): string {
  return r.steps.map((s) => (s.chosen === 'depth' ? 'D' : 'W')).join('') || '-';
}

/** Per surviving layer "kvHeads/ffn" with its source layer index. */
function shapeOf(r: PruneReport): string {
  return r.result.layers.map((l, k) => `L${r.result.sourceLayers[k]}:${l.kvHeads}/${l.ffn}`).join(' ');
}

const rows: Row[] = prior?.rows ?? [];
if (!prior) for (const target of targets) for (const strategy of ['mop', 'depth', 'width'] as const) rows.push(await measure('default', strategy, target));

const sweep: [string, Knobs][] = [
  ['criterion kl', { criterion: 'kl' }],
  ['criterion cosine', { criterion: 'cosine' }],
  ['step 0.5 layer', { stepLayers: 0.5 }],
  ['step 0.25 layer', { stepLayers: 0.25 }],
  ['depth unit sub-block', { depthUnit: 'sublayer' }],
  ['sub-block, step 0.5', { depthUnit: 'sublayer', stepLayers: 0.5 }],
  ['width split global', { widthSplit: 'global', widthNormalize: 'none' }],
  ['importance magnitude', { importance: 'magnitude' }],
  // Another draw of the calibration sequences: how much of a difference is calibration noise.
  [`calibration seed ${seed + 1}`, { calibration: await loadCalibration(tokenizer, { samples, seqLen, seed: seed + 1, ...(args.calibration !== undefined && { path: args.calibration }) }), seed: seed + 1 }],
];
if (knobSweep && !prior) {
  for (const [name, knobs] of sweep) for (const target of targets) rows.push(await measure(name, 'mop', target, knobs));
  // The width split matters to the width-only baseline as much as to MoP's width branch.
  for (const target of targets) rows.push(await measure('width split global', 'width', target, { widthSplit: 'global', widthNormalize: 'none' }));
  for (const target of targets) rows.push(await measure('depth unit sub-block', 'depth', target, { depthUnit: 'sublayer' }));
}

// ---- report -----------------------------------------------------------------------------------
const get = (variant: string, strategy: Strategy, target: number) => rows.find((r) => r.variant === variant && r.strategy === strategy && r.target === target);

const lines: string[] = [];
lines.push('# Pruning quality: MoP vs depth-only vs width-only, without and with recovery fine-tuning');
lines.push('');
lines.push(`Generated by \`${command}\` (scripts/bench-quality.ts) on ${new Date().toISOString().slice(0, 10)}; do not edit by hand.`);
lines.push('', 'Recovery on the model\'s own text (`--recovery-data self`) vs on TinyStories text: [recovery-data-report.md](recovery-data-report.md) (`npm run bench:recovery-data`).');
lines.push('', 'Quality against the final-recovery budget (100 / 300 / 1,000 / 3,000 steps at 40%, three held-out texts, wall time): [recovery-budget-report.md](recovery-budget-report.md) (`npm run bench:recovery-budget`). MoP vs depth-only vs width-only after recovery over calibration seeds, mean and spread: [mop-edge-report.md](mop-edge-report.md) (`npm run bench:mop-edge`).');
lines.push('');
lines.push(`- Model: ${args.model ?? 'bundled stories260K'} (${model.spec.layers.length} layers, hidden ${model.spec.hidden}, ${model.spec.layers[0]!.heads} heads / ${model.spec.layers[0]!.kvHeads} KV heads, ffn ${model.spec.layers[0]!.ffn}); ${denseBlocks.toLocaleString('en-US')} block parameters (what is pruned), ${parameterCounts(model.spec).embeddings.toLocaleString('en-US')} embedding/norm parameters (never pruned). One layer = ${pct(1 / model.spec.layers.length)} of the block parameters.`);
lines.push(`- Calibration: ${samples} sequences × ${seqLen} tokens from \`${args.calibration ?? 'data/tinystories-calibration.txt'}\`, seed ${seed}. The tables before "With recovery fine-tuning" prune without any recovery.`);
lines.push(`- Held-out: \`${args.heldout ?? 'data/tinystories-heldout.txt'}\` (disjoint from the calibration text), ${heldout.tokens.toLocaleString('en-US')} tokens in non-overlapping windows of ${args['eval-seq-len']}.`);
lines.push(`- **Dense held-out perplexity: ${f(dense.perplexity, 3)}.**`);
lines.push('- Ratio = 1 − block params(pruned) / block params(dense); every run lands within ±0.5 points of its target.');
lines.push('- Defaults: selection by calibration perplexity, step budget one average layer, depth removes whole layers (block-influence importance), width budget split between attention and MLP by parameter share with scores normalised per layer and type (AMP importance).');
lines.push('');
lines.push('## Held-out perplexity without recovery (lower is better; best in bold)');
lines.push('');
lines.push('| target | MoP | depth-only | width-only | MoP vs best baseline | MoP path | MoP layers (source:kv/ffn) |');
lines.push('| --- | --- | --- | --- | --- | --- | --- |');
let wins = 0;
const notWon: string[] = [];
for (const t of targets) {
  const m = get('default', 'mop', t)!;
  const d = get('default', 'depth', t)!;
  const w = get('default', 'width', t)!;
  const best = Math.min(m.perplexity, d.perplexity, w.perplexity);
  const cell = (r: Row) => (r.perplexity === best ? `**${f(r.perplexity)}**` : f(r.perplexity));
  const baseline = Math.min(d.perplexity, w.perplexity);
  const rel = (m.perplexity / baseline - 1) * 100;
  const verdict = Math.abs(rel) < 0.05 ? 'tie' : rel < 0 ? `wins (${f(rel, 1)}%)` : `**loses** (+${f(rel, 1)}%)`;
  if (rel < -0.05) wins++;
  else notWon.push(`${pct(t)} (${verdict.replaceAll('*', '')})`);
  lines.push(`| ${pct(t)} | ${cell(m)} | ${cell(d)} | ${cell(w)} | ${verdict} | ${m.path} | ${m.layers} |`);
}
lines.push('');
lines.push(`MoP beats both baselines at ${wins} of ${targets.length} targets${notWon.length ? `; it does not win at ${notWon.join(', ')}` : ''}.`);
lines.push('');
lines.push('## Held-out KL divergence to the dense model (nats per token)');
lines.push('');
lines.push('| target | MoP | depth-only | width-only |');
lines.push('| --- | --- | --- | --- |');
for (const t of targets) {
  const rs = (['mop', 'depth', 'width'] as const).map((s) => get('default', s, t)!);
  const best = Math.min(...rs.map((r) => r.kl));
  lines.push(`| ${pct(t)} | ${rs.map((r) => (r.kl === best ? `**${f(r.kl, 3)}**` : f(r.kl, 3))).join(' | ')} |`);
}

if (knobSweep) {
  lines.push('');
  lines.push('## Investigation: MoP knobs (held-out perplexity)');
  lines.push('');
  lines.push('Each row changes one knob from the defaults. Path: the branch chosen at each step (D depth, W width).');
  lines.push('');
  lines.push(`| variant | ${targets.map(pct).join(' | ')} |`);
  lines.push(`| --- | ${targets.map(() => '---').join(' | ')} |`);
  const variants: [string, Strategy][] = [
    ['default', 'mop'],
    ...sweep.map(([n]): [string, Strategy] => [n, 'mop']),
    ['default', 'depth'],
    ['depth unit sub-block', 'depth'],
    ['default', 'width'],
    ['width split global', 'width'],
  ];
  for (const [v, s] of variants) {
    const cells = targets.map((t) => {
      const r = get(v, s, t);
      if (!r) return '–';
      const col = rows.filter((x) => x.target === t);
      const best = Math.min(...col.map((x) => x.perplexity));
      const txt = `${f(r.perplexity)} ${s === 'mop' ? `(${r.path})` : ''}`.trim();
      return r.perplexity === best ? `**${txt}**` : txt;
    });
    lines.push(`| ${s === 'mop' ? `MoP, ${v}` : `${s}-only${v === 'default' ? '' : `, ${v}`}`} | ${cells.join(' | ')} |`);
  }
}

lines.push('');
lines.push('## Findings (without recovery)');
lines.push('');
for (const p of findings()) lines.push(`- ${p}`);
lines.push('');
const noRecoveryLines = lines.splice(0);

/** Statements computed from this run's numbers, so they stay true when the report is regenerated. */
function findings(): string[] {
  const out: string[] = [];
  const layerShare = 1 / model.spec.layers.length;
  const same = (a: Row, b: Row) => Math.abs(a.perplexity - b.perplexity) < 1e-9 && a.layers === b.layers;
  // Why MoP does not beat the baselines where it does not: usually it made the same choices.
  for (const t of targets) {
    const m = get('default', 'mop', t)!;
    const d = get('default', 'depth', t)!;
    const w = get('default', 'width', t)!;
    if (same(m, w) && !m.path.includes('D')) {
      out.push(`${pct(t)}: MoP = width-only, same model. ${t < layerShare - 0.005 ? `The target is below one layer (${pct(layerShare)} of the block parameters), so no depth candidate fits and MoP has only the width branch.` : 'Width won every comparison.'}`);
    } else if (same(m, d)) {
      out.push(`${pct(t)}: MoP = depth-only, same model (path ${m.path}): depth won the comparison at one layer, and the remainder no whole layer fits into is trimmed by width in both (depth-only's trim is the same width step).`);
    } else if (m.perplexity < Math.min(d.perplexity, w.perplexity)) {
      out.push(`${pct(t)}: MoP wins (path ${m.path}, depth-only ${d.path}, width-only ${w.path}): it stopped taking layers when a layer's worth of width cost less calibration perplexity than the next layer.`);
    } else {
      out.push(`${pct(t)}: MoP loses (path ${m.path}, depth-only ${d.path}, width-only ${w.path}): the calibration-set choice did not carry over to held-out text.`);
    }
  }
  if (knobSweep) {
    const noiseVariant = sweep.at(-1)![0];
    const noise = Math.max(...targets.map((t) => Math.abs(get(noiseVariant, 'mop', t)!.perplexity / get('default', 'mop', t)!.perplexity - 1)));
    out.push(`Calibration noise: drawing other calibration sequences (${noiseVariant}) moves MoP's held-out perplexity by up to ${f(100 * noise, 1)}%; smaller differences between rows are not evidence.`);
    const summarize = (v: string) => {
      const better = targets.filter((t) => get(v, 'mop', t)!.perplexity < get('default', 'mop', t)!.perplexity - 1e-9);
      const worse = targets.filter((t) => get(v, 'mop', t)!.perplexity > get('default', 'mop', t)!.perplexity + 1e-9);
      return `${v}: better at ${better.length ? better.map(pct).join(', ') : 'no target'}, worse at ${worse.length ? worse.map(pct).join(', ') : 'no target'}`;
    };
    out.push(`Knobs vs default MoP — ${sweep.slice(0, -1).map(([v]) => summarize(v)).join('; ')}.`);
    const unchanged = sweep.filter(([v]) => v.startsWith('criterion') && targets.every((t) => get(v, 'mop', t)!.path === get('default', 'mop', t)!.path)).map(([v]) => v);
    if (unchanged.length) out.push(`Selection criterion: ${unchanged.join(' and ')} made exactly the choices perplexity made at every target: the candidates' scores are far apart on this model, so the criterion only matters when they are close.`);
    const notBetter = (v: string, strategy: Strategy = 'mop', only: number[] = targets) => only.every((t) => get(v, strategy, t)!.perplexity >= get('default', strategy, t)!.perplexity - 1e-9);
    if (notBetter('step 0.5 layer') && notBetter('step 0.25 layer')) out.push('Step budget: steps under one layer compare the two branches at the depth candidate\'s size but commit only a step\'s worth of width, then re-rank; on this model the extra width steps cost more than the single trim of the default.');
    if (notBetter('depth unit sub-block', 'mop', targets.filter((t) => t >= layerShare))) out.push('Sub-block depth (a layer\'s attention or MLP alone): block influence ranks attention sub-blocks as least important, and removing several of them is cheap on the calibration score at first, then collapses (see depth-only with sub-blocks). It helps only where a target is smaller than a layer.');
    if (notBetter('width split global') && notBetter('width split global', 'width')) out.push('Width split: one global per-parameter ranking (no per-layer normalisation) removes attention groups first and is far worse for both MoP and width-only, as the design notes predicted; the split by parameter share is the default for that reason.');
    const bestPerTarget = targets.map((t) => {
      const col = rows.filter((x) => x.target === t);
      const b = col.reduce((a, c) => (c.perplexity < a.perplexity ? c : a));
      return `${pct(t)}: ${b.strategy === 'mop' ? `MoP (${b.variant})` : `${b.strategy}-only (${b.variant})`} ${f(b.perplexity)}`;
    });
    out.push(`Best of everything measured, per target — ${bestPerTarget.join('; ')}.`);
  }
  out.push('Without recovery fine-tuning a 260K-parameter model degrades fast: every removed structure matters, differences between methods are large in absolute perplexity, and a ranking on this model says little about a 7B one. `--model` runs the same comparison on any checkpoint `loadModel` reads.');
  return out;
}

// ---- recovery ---------------------------------------------------------------------------------
const recoverySweepRuns: [string, Strategy, Partial<PruneRecipe>][] = [
  ['final recovery only (0 per candidate)', 'mop', { recoverySteps: 0 }],
  ['50 steps per candidate', 'mop', { recoverySteps: 50 }],
  // The baselines at the same larger budget: the fair comparison for the row above.
  ['50 steps per candidate', 'depth', { recoverySteps: 50 }],
  ['50 steps per candidate', 'width', { recoverySteps: 50 }],
  ['no final recovery (candidates only)', 'mop', { finalRecoverySteps: 0 }],
  ['loss ce', 'mop', { recoveryLoss: 'ce' }],
  ['LoRA r 8, lr 5e-3', 'mop', { recovery: 'lora', recoveryLr: 5e-3 }],
  ['depth rule third-to-last', 'mop', { depthRule: 'third-to-last' }],
  ['depth rule third-to-last', 'depth', { depthRule: 'third-to-last' }],
  ['criterion random', 'mop', { criterion: 'random' }],
  ['criterion kl', 'mop', { criterion: 'kl' }],
];
const plannedRecovered = recoveryTargets.length * 3 + (recoverySweep ? recoverySweepRuns.length : 0);

// Order: the sweep target's three rows, then the recovery knob sweep there, then the other
// targets (a run stopped early has the rows the recipe choice rests on).
writeReport();
const recoveredRow = async (target: number) => {
  for (const strategy of ['mop', 'depth', 'width'] as const) {
    if (!toMeasure('recovered', strategy, target)) continue;
    rows.push(await measure('recovered', strategy, target, {}, {}));
    writeReport();
  }
};
if (recoveryTargets.includes(sweepTarget)) await recoveredRow(sweepTarget);
if (recoverySweep) {
  for (const [name, strategy, overrides] of recoverySweepRuns) {
    if (!toMeasure(name, strategy, sweepTarget)) continue;
    rows.push(await measure(name, strategy, sweepTarget, {}, overrides));
    writeReport();
  }
}
for (const target of recoveryTargets) if (target !== sweepTarget) await recoveredRow(target);
for (const target of uniformTargets) {
  for (const [variant, knobs] of [[uniformVariants.perLayer, {}], [uniformVariants.uniform, { uniform: true }]] as const) {
    if (!toMeasure(variant, 'mop', target)) continue;
    rows.push(await measure(variant, 'mop', target, knobs, {}));
    writeReport();
  }
}

function writeReport(): void {
  const all = [...noRecoveryLines];
  const context = { rows, targets, sweepTarget, seed, dense, tableDefaults, plannedRecovered, get };
  if (recoveryTargets.length || recoverySweep) all.push(...recoveryLines(context));
  const uniformMeasured = [...new Set(rows.filter((r) => r.variant === uniformVariants.uniform).map((r) => r.target))];
  if (uniformTargets.length || uniformMeasured.length) all.push(...uniformLines(context, uniformTargets.length ? uniformTargets : uniformMeasured, 2 * (uniformTargets.length || uniformMeasured.length)));
  fs.mkdirSync(path.dirname(args.out), { recursive: true });
  fs.writeFileSync(args.out, all.join('\n'));
  const jsonPath = jsonOut;
  fs.writeFileSync(
    jsonPath,
    JSON.stringify({ command, dense: { perplexity: dense.perplexity, tokens: dense.tokens, blocks: denseBlocks }, calibration: calibration.description, recoveryRecipe: tableDefaults, rows }, null, 2) + '\n',
  );
  process.stderr.write(`wrote ${args.out} and ${jsonPath}\n`);
}
