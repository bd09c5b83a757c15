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
import { parseScriptArgs } from './lib/script-args.ts';

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

interface Row {
  variant: string;
  strategy: Strategy;
  target: number;
  ratio: number;
  perplexity: number;
  kl: number;
  calibrationScore: number;
  path: string;
  layers: string;
  wallMs: number;
  /** Recovery recipe overrides of this row (absent: no recovery). */
  recovery?: Partial<PruneRecipe>;
  /** Wall time spent in recovery (candidates + final). */
  recoverySeconds?: number;
  /** Held-out perplexity of the same model before its final recovery (with recovery rows). */
  perplexityBeforeFinal?: number;
}

type Knobs = Partial<Pick<MopOptions, 'criterion' | 'stepLayers' | 'depthUnit' | 'depthRule' | 'widthSplit' | 'widthNormalize' | 'importance' | 'calibration' | 'seed'>>;

/** The shared option table's defaults: what `mop prune` runs without flags. */
const tableDefaults = defaultPruneSettings();

async function measure(variant: string, strategy: Strategy, target: number, knobs: Knobs = {}, recoveryOverrides?: Partial<PruneRecipe>): Promise<Row> {
  const recipe: PruneRecipe = { ...tableDefaults, ...recoveryOverrides, target };
  const recovery = recoveryOverrides ? await prepareRecovery(recipe, { tokenizer, model, threads }) : undefined;
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
const f = (x: number, d = 2) => x.toFixed(d);
const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
const get = (variant: string, strategy: Strategy, target: number) => rows.find((r) => r.variant === variant && r.strategy === strategy && r.target === target);

const lines: string[] = [];
lines.push('# Pruning quality: MoP vs depth-only vs width-only, without and with recovery fine-tuning');
lines.push('');
lines.push(`Generated by \`${command}\` (scripts/bench-quality.ts) on ${new Date().toISOString().slice(0, 10)}; do not edit by hand.`);
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
const recipeOverrides = (r: Partial<PruneRecipe>) => (Object.keys(r).length ? Object.entries(r).map(([k, v]) => `${k} ${String(v)}`).join(', ') : 'default recipe');

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

function recoveryLines(): string[] {
  const rec = rows.filter((r) => r.recovery);
  const compared = recoveredComparison();
  return [...recoveryIntroLines(rec.length), ...compared.lines, ...recoveredKlLines(), ...recoveryNoteLines(rec), ...recoveryKnobLines(rec), ...recoveryVerdictLines(compared.verdicts, compared.worstLoss), ...recoveryKnobTable(rec), ''];
}

/** The recipe, how many recovered runs ran, and the comparison table's header. */
function recoveryIntroLines(recoveredRuns: number): string[] {
  const out: string[] = [];
  const d = tableDefaults;
  out.push('## With recovery fine-tuning');
  out.push('');
  out.push(
    `Recipe (the shared prune table's defaults, what \`mop prune\` runs without flags): ${d.recovery} fine-tuning, loss ${d.recoveryLoss} (α ${d.recoveryKdAlpha} distillation from the dense model + ${1 - d.recoveryKdAlpha} cross-entropy), lr ${d.recoveryLr} (AdamW, warm-up 1/15 of the steps, cosine decay), ${d.recoveryBatch} × ${d.recoverySeqLen} tokens per step; **${d.recoverySteps} steps per candidate** before it is scored, **${d.finalRecoverySteps} steps after the target**. Depth-only and width-only run the same code with one candidate per step, so every model's lineage gets the same recovery (${d.recoverySteps} steps per pruning step + ${d.finalRecoverySteps}). Recovery text: \`data/tinystories-recovery-start.txt\` + \`data/tinystories-recovery.txt\` (the first 350 KB of the source text), disjoint from the calibration and held-out slices, so every candidate is scored on text its recovery did not train on. Seconds are wall time on this machine (2 shared cores; other jobs ran at the same time, so they vary by up to 2×).`,
  );
  out.push('');
  out.push(`Ran ${recoveredRuns} of ${plannedRecovered} recovered runs planned by this command${recoveredRuns < plannedRecovered ? ' (stopped early; the rest is not measured)' : ''}.`);
  out.push('');
  out.push('| target | MoP | MoP + rec | depth-only | depth + rec | width-only | width + rec | MoP + rec vs best baseline + rec | × dense (MoP + rec) | recovery s (MoP / depth / width) | MoP + rec path |');
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  return out;
}

/** Per target: each strategy without and with recovery, and where MoP + recovery loses to the better baseline (from 20%). */
function recoveredComparison(): { lines: string[]; verdicts: string[]; worstLoss: number } {
  const out: string[] = [];
  const verdicts: string[] = [];
  let worstLoss = 0;
  for (const t of [...targets].sort((a, b) => a - b)) {
    const m = get('recovered', 'mop', t);
    const dd = get('recovered', 'depth', t);
    const w = get('recovered', 'width', t);
    if (!m && !dd && !w) continue;
    const cell = (r: Row | undefined) => (r ? f(r.perplexity) : '–');
    let verdict = '–';
    if (m && dd && w) {
      const baseline = Math.min(dd.perplexity, w.perplexity);
      const rel = (m.perplexity / baseline - 1) * 100;
      verdict = Math.abs(rel) < 0.05 ? 'tie' : rel < 0 ? `wins (${f(rel, 1)}%)` : `**loses** (+${f(rel, 1)}%)`;
      if (t >= 0.2 && rel > 0.05) {
        worstLoss = Math.max(worstLoss, rel / 100);
        const winner = dd.perplexity < w.perplexity ? dd : w;
        const layers = (r: Row) => r.layers.split(' ').length;
        verdicts.push(
          `${pct(t)}: MoP + recovery ${f(m.perplexity)} vs ${winner.strategy}-only + recovery ${f(baseline)}, +${f(rel, 1)}% (path MoP ${m.path}, depth ${dd.path}, width ${w.path}); MoP's model keeps ${layers(m)} layers, ${winner.strategy}-only's ${layers(winner)}` +
            (layers(m) < layers(winner) ? ' (fewer layers: less per-token work at the same parameter count)' : ''),
        );
      }
    }
    const secs = [m, dd, w].map((r) => (r ? f(r.recoverySeconds ?? 0, 0) : '–')).join(' / ');
    out.push(
      `| ${pct(t)} | ${cell(get('default', 'mop', t))} | **${cell(m)}** | ${cell(get('default', 'depth', t))} | ${cell(dd)} | ${cell(get('default', 'width', t))} | ${cell(w)} | ${verdict} | ${m ? f(m.perplexity / dense.perplexity) : '–'} | ${secs} | ${m?.path ?? '–'} |`,
    );
  }
  return { lines: out, verdicts, worstLoss };
}

/** KL(dense ‖ model) of each recovered model. */
function recoveredKlLines(): string[] {
  const out: string[] = [];
  out.push('');
  out.push('KL(dense ‖ model) on the held-out text, nats per token, with recovery:');
  out.push('');
  out.push('| target | MoP + rec | depth + rec | width + rec |');
  out.push('| --- | --- | --- | --- |');
  for (const t of [...targets].sort((a, b) => a - b)) {
    const rs = (['mop', 'depth', 'width'] as const).map((st) => get('recovered', st, t));
    if (rs.every((r) => !r)) continue;
    out.push(`| ${pct(t)} | ${rs.map((r) => (r ? f(r.kl, 3) : '–')).join(' | ')} |`);
  }
  return out;
}

/** The target check at the sweep target, and the recovered models that beat the un-tuned dense model. */
function recoveryNoteLines(rec: Row[]): string[] {
  const out: string[] = [];
  const m40 = get('recovered', 'mop', sweepTarget);
  if (m40) {
    out.push('');
    out.push(
      `**Target check at ${pct(sweepTarget)}** (the default \`mop prune\` recipe): held-out perplexity ${f(m40.perplexity, 3)} = **${f(m40.perplexity / dense.perplexity)}× dense** (target ≤ 1.5×; without recovery ${f(get('default', 'mop', sweepTarget)!.perplexity / dense.perplexity)}×); the whole prune took **${f(m40.wallMs / 1000, 0)} s** (target < 600 s), ${f(m40.recoverySeconds ?? 0, 0)} s of it recovery.`,
    );
  }
  out.push('');
  const belowDense = rec.filter((r) => r.perplexity < dense.perplexity);
  if (belowDense.length) {
    out.push('');
    out.push(
      `Below the dense model (${belowDense.map((r) => `${r.strategy} ${pct(r.target)} ${f(r.perplexity)}`).join(', ')} vs dense ${f(dense.perplexity, 3)}): recovery fine-tunes on in-domain TinyStories text (its cross-entropy share), which the dense model never got; a dense model given the same fine-tuning was not measured, so "× dense" compares against an un-tuned parent.`,
    );
  }
  return out;
}

/** Each recovery knob against MoP with the default recipe, and MoP against the baselines run with the same knob. */
function recoveryKnobLines(rec: Row[]): string[] {
  const out: string[] = [];
  const def = get('recovered', 'mop', sweepTarget);
  const knobRows = rec.filter((r) => r.variant !== 'recovered' && r.strategy === 'mop');
  if (def && knobRows.length) {
    const change = (r: Row) => `${r.variant} ${f(r.perplexity)} (${r.perplexity < def.perplexity ? '' : '+'}${f((r.perplexity / def.perplexity - 1) * 100, 1)}%, ${f(r.recoverySeconds ?? 0, 0)} s of recovery)`;
    out.push('');
    out.push(`At ${pct(sweepTarget)}, against MoP with the default recipe (${f(def.perplexity)}, ${f(def.recoverySeconds ?? 0, 0)} s of recovery): ${knobRows.map(change).join('; ')}.`);
    // Where a knob was also run for a baseline: MoP against it at that same recipe.
    for (const variant of new Set(rec.filter((r) => r.variant !== 'recovered' && r.strategy !== 'mop').map((r) => r.variant))) {
      const m = get(variant, 'mop', sweepTarget);
      const others = (['depth', 'width'] as const).map((st) => get(variant, st, sweepTarget)).filter((r): r is Row => r !== undefined);
      if (!m || !others.length) continue;
      out.push('');
      out.push(`Same recipe for all (${variant}): MoP ${f(m.perplexity)} (${m.path}) vs ${others.map((o) => `${o.strategy}-only ${f(o.perplexity)} (${o.path})`).join(', ')}.`);
    }
  }
  return out;
}

/** Whether MoP + recovery lost anywhere, and why (against the calibration noise measured without recovery). */
function recoveryVerdictLines(verdicts: string[], worstLoss: number): string[] {
  const out: string[] = [];
  const noiseRows = targets.map((t) => [get(`calibration seed ${seed + 1}`, 'mop', t), get('default', 'mop', t)] as const).filter(([a, b]) => a && b);
  const noise = noiseRows.length ? Math.max(...noiseRows.map(([a, b]) => Math.abs(a!.perplexity / b!.perplexity - 1))) : undefined;
  out.push(
    verdicts.length
      ? `MoP + recovery loses to the better baseline + recovery at: ${verdicts.join('; ')}. Why: with recovery, the two candidates' calibration scores are close (each is fine-tuned before it is scored), so the path criterion picks on differences this small${noise !== undefined && worstLoss < noise ? `; margins this size are below the calibration noise measured without recovery (another calibration draw moves MoP by up to ${f(100 * noise, 1)}%)` : ''}.`
      : 'MoP + recovery is no worse than the better baseline + recovery at every measured target from 20% up.',
  );
  return out;
}

/** The recovery knob sweep at the sweep target, one change from the default recipe per row. */
function recoveryKnobTable(rec: Row[]): string[] {
  const out: string[] = [];
  const sweepRows = rec.filter((r) => r.variant !== 'recovered');
  if (sweepRows.length) {
    out.push('');
    out.push(`### Recovery knobs at ${pct(sweepTarget)} (one change from the default recipe each)`);
    out.push('');
    out.push('| variant | strategy | held-out ppl | × dense | KL | path | recovery s | prune wall s |');
    out.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
    const base = (['mop', 'depth', 'width'] as const).map((st) => get('recovered', st, sweepTarget)).filter((r): r is Row => r !== undefined);
    for (const r of [...base, ...sweepRows]) {
      out.push(`| ${r.variant === 'recovered' ? 'default recipe' : `${r.variant} (${recipeOverrides(r.recovery!)})`} | ${r.strategy} | ${f(r.perplexity, 3)} | ${f(r.perplexity / dense.perplexity)} | ${f(r.kl, 3)} | ${r.path} | ${f(r.recoverySeconds ?? 0, 0)} | ${f(r.wallMs / 1000, 0)} |`);
    }
  }
  return out;
}

function writeReport(): void {
  const all = [...noRecoveryLines];
  if (recoveryTargets.length || recoverySweep) all.push(...recoveryLines());
  fs.mkdirSync(path.dirname(args.out), { recursive: true });
  fs.writeFileSync(args.out, all.join('\n'));
  const jsonPath = jsonOut;
  fs.writeFileSync(
    jsonPath,
    JSON.stringify({ command, dense: { perplexity: dense.perplexity, tokens: dense.tokens, blocks: denseBlocks }, calibration: calibration.description, recoveryRecipe: tableDefaults, rows }, null, 2) + '\n',
  );
  process.stderr.write(`wrote ${args.out} and ${jsonPath}\n`);
}
