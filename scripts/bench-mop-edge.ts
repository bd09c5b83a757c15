/**
 * MoP's edge after recovery, measured over calibration seeds: the bundled model pruned by MoP,
 * depth-only and width-only (`mop prune --strategy mop|depth|width`) at each target, each with the
 * default recovery recipe (every candidate recovered, then the final recovery), for each seed (the
 * seed draws the calibration sequences and orders the recovery batches). Each model is measured on
 * the held-out texts of scripts/lib/recovered-quality.ts; the report gives per target and strategy
 * the mean and standard deviation over seeds, MoP against the better baseline, and whether that
 * difference is beyond the seed-to-seed spread. Writes Markdown and JSON after every run.
 *
 *   npm run bench:mop-edge -- [--targets 0.2,0.3,0.4,0.5] [--seeds 0,1] [--strategies mop,depth,width]
 *                             [--final-steps N] [--threads N] [--out docs/mop-edge-report.md] [--render-only] [--append]
 *   --append: keep the JSON's runs and measure only those it lacks.
 *   --final-steps: the final recovery's steps (default: the prune table's default budget).
 */
import fs from 'node:fs';
import os from 'node:os';
import { type CalibrationSet, loadCalibration } from '../src/mop/calibration.ts';
import { runMop } from '../src/mop/mop.ts';
import type { Strategy } from '../src/mop/report.ts';
import { defaultModelPath, loadModel } from '../src/runtime/model/load.ts';
import { createTokenizer } from '../src/runtime/tokenizer/create.ts';
import { defaultPruneSettings, type PruneRecipe } from '../src/service/prune/prune-options.ts';
import { prepareRecovery } from '../src/service/prune/run-prune.ts';
import { memorySelfTextCache } from './lib/memory-self-text-cache.ts';
import { intOption, listOption, numberListOption } from './lib/option-values.ts';
import { evalTexts, loadAverage, meanSd, qualityOn, type TextQuality } from './lib/recovered-quality.ts';
import { parseScriptArgs } from './lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, {
  targets: { type: 'string', default: '0.2,0.3,0.4,0.5' },
  seeds: { type: 'string', default: '0,1' },
  strategies: { type: 'string', default: 'mop,depth,width' },
  'final-steps': { type: 'string' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  out: { type: 'string', default: 'docs/mop-edge-report.md' },
  'render-only': { type: 'boolean', default: false },
  append: { type: 'boolean', default: false },
});
const defaults = defaultPruneSettings();
/** Text sampled from the dense model for recovery: once per calibration seed (its prompts) for the whole run. */
const selfTextCache = memorySelfTextCache();
const targets = numberListOption('targets', args.targets, (n) => n > 0 && n < 1);
const seeds = numberListOption('seeds', args.seeds, (n) => Number.isInteger(n) && n >= 0);
const strategies = listOption(args.strategies) as Strategy[];
const finalSteps = args['final-steps'] !== undefined ? intOption('final-steps', args['final-steps'], 0) : defaults.finalRecoverySteps;
const threads = Number(args.threads);
const jsonOut = args.out.replace(/\.md$/, '') + '.json';

interface Run {
  strategy: Strategy;
  target: number;
  seed: number;
  path: string;
  quality: Record<string, TextQuality>;
  seconds: number;
  loadAverage: number;
}

interface Report {
  command: string;
  cpu: string;
  candidateSteps: number;
  finalSteps: number;
  dense: Record<string, TextQuality>;
  runs: Run[];
}

/** MoP against the better baseline on one text at one target: relative difference of the means, and the verdict. */
function verdict(r: Report, target: number, text: string): string {
  const stats = (s: Strategy) => {
    const xs = r.runs.filter((x) => x.target === target && x.strategy === s).map((x) => x.quality[text]!.perplexity);
    return xs.length ? { ...meanSd(xs), n: xs.length } : undefined;
  };
  const mop = stats('mop');
  const base = (['depth', 'width'] as Strategy[]).map((s) => ({ s, st: stats(s) })).filter((b) => b.st).sort((a, b) => a.st!.mean - b.st!.mean)[0];
  if (!mop || !base) return '–';
  const diff = mop.mean / base.st!.mean - 1;
  const spread = Math.max(mop.sd, base.st!.sd) / base.st!.mean;
  // Beyond noise only when the gap is twice the larger spread and every seed agrees on its sign.
  const perSeed = r.runs
    .filter((x) => x.target === target && x.strategy === 'mop')
    .map((m) => {
      const b = r.runs.find((x) => x.target === target && x.strategy === base.s && x.seed === m.seed);
      return b ? Math.sign(m.quality[text]!.perplexity - b.quality[text]!.perplexity) : 0;
    });
  const agree = perSeed.length >= 2 && perSeed.every((x) => x !== 0 && x === perSeed[0]);
  const noise = mop.n < 2 || Math.abs(diff) <= 2 * spread || !agree;
  return `${diff >= 0 ? '+' : ''}${(100 * diff).toFixed(1)}% vs ${base.s}-only (spread ±${(100 * spread).toFixed(1)}%): ${noise ? 'within noise' : diff < 0 ? 'MoP better' : 'MoP worse'}`;
}

function render(r: Report): string {
  const texts = Object.keys(r.dense);
  const ts = [...new Set(r.runs.map((x) => x.target))].sort();
  const ss = [...new Set(r.runs.map((x) => x.seed))].sort();
  const lines = [
    '# MoP vs depth-only vs width-only after recovery, over calibration seeds',
    '',
    `\`${r.command}\` on ${r.cpu}. Every model: ${r.candidateSteps} recovery steps per candidate, then ${r.finalSteps} final steps (default recipe otherwise); seeds ${ss.join(', ')} (calibration draw and recovery batch order). Held-out perplexity as mean ± standard deviation over the seeds; dense: ${texts.map((t) => `${t} ${r.dense[t]!.perplexity.toFixed(3)}`).join(', ')}. "Within noise" unless MoP's mean is further from the better baseline's than twice the larger of their seed-to-seed standard deviations and every seed puts MoP on the same side.`,
    '',
    `| target | text | ${['mop', 'depth', 'width'].map((s) => `${s}`).join(' | ')} | MoP vs better baseline | MoP paths |`,
    '| ---: | --- | ---: | ---: | ---: | --- | --- |',
  ];
  for (const t of ts) {
    for (const text of texts) {
      const cell = (s: Strategy) => {
        const xs = r.runs.filter((x) => x.target === t && x.strategy === s).map((x) => x.quality[text]!.perplexity);
        if (!xs.length) return '–';
        const { mean, sd } = meanSd(xs);
        return `${mean.toFixed(3)} ± ${sd.toFixed(3)}`;
      };
      const paths = r.runs.filter((x) => x.target === t && x.strategy === 'mop').map((x) => `${x.seed}: ${x.path}`).join(', ');
      lines.push(`| ${(100 * t).toFixed(0)}% | ${text} | ${cell('mop')} | ${cell('depth')} | ${cell('width')} | ${verdict(r, t, text)} | ${text === texts[0] ? paths : ''} |`);
    }
  }
  const verdicts = ts.flatMap((t) => texts.map((text) => verdict(r, t, text)));
  const count = (w: string) => verdicts.filter((v) => v.endsWith(w)).length;
  lines.push('', `**MoP against the better baseline, over ${verdicts.length} target × text cells: better beyond the noise in ${count('MoP better')}, worse beyond it in ${count('MoP worse')}, within the seed-to-seed noise in ${count('within noise')}.** Targets measured: ${ts.map((t) => `${(100 * t).toFixed(0)}%`).join(', ')}.`);
  lines.push('', 'Every run (held-out perplexity per text, KL to dense on `heldout`, wall seconds of the whole prune and the load average while it ran):', '');
  lines.push(`| target | strategy | seed | path | ${texts.join(' | ')} | KL heldout | s | load |`, `| ---: | --- | ---: | --- | ${texts.map(() => '---:').join(' | ')} | ---: | ---: | ---: |`);
  for (const x of r.runs) {
    lines.push(`| ${(100 * x.target).toFixed(0)}% | ${x.strategy} | ${x.seed} | ${x.path} | ${texts.map((t) => x.quality[t]!.perplexity.toFixed(3)).join(' | ')} | ${x.quality[texts[0]!]!.kl.toFixed(4)} | ${x.seconds.toFixed(0)} | ${x.loadAverage.toFixed(1)} |`);
  }
  return lines.join('\n') + '\n';
}

if (args['render-only']) {
  fs.writeFileSync(args.out, render(JSON.parse(fs.readFileSync(jsonOut, 'utf8')) as Report));
  process.exit(0);
}

const model = await loadModel(defaultModelPath());
const tokenizer = createTokenizer(model.tokenizer);
const texts = evalTexts(tokenizer);
const dense = { spec: model.spec, weights: model.weights };
const prior = args.append ? (JSON.parse(fs.readFileSync(jsonOut, 'utf8')) as Report) : undefined;
const thisCommand = `npm run bench:mop-edge${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`;
const report: Report = {
  command: prior ? `${prior.command}\`, then \`${thisCommand}` : thisCommand,
  cpu: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}`,
  candidateSteps: defaults.recoverySteps,
  finalSteps,
  dense: await qualityOn(texts, dense, dense, threads),
  runs: prior?.runs ?? [],
};
const calibrations = new Map<number, CalibrationSet>();
for (const seed of seeds) calibrations.set(seed, await loadCalibration(tokenizer, { samples: defaults.samples, seqLen: defaults.seqLen, seed }));
// Target by target, so a run stopped early has every seed of the targets it reached.
for (const target of targets) {
  for (const seed of seeds) {
    const calibration = calibrations.get(seed)!;
    for (const strategy of strategies) {
      if (report.runs.some((x) => x.strategy === strategy && x.target === target && x.seed === seed)) continue;
      const recipe: PruneRecipe = { ...defaults, target, strategy, seed, finalRecoverySteps: finalSteps };
      const recovery = await prepareRecovery(recipe, { tokenizer, model, threads, calibration, selfTextCache });
      const load = loadAverage();
      const t0 = performance.now();
      const mop = await runMop(model, { target, strategy, calibration, seed, threads, criterion: recipe.criterion, depthRule: recipe.depthRule, ...(recovery && { recovery }) });
      const seconds = (performance.now() - t0) / 1000;
      const run: Run = {
        strategy,
        target,
        seed,
        path: mop.report.steps.map((s) => (s.chosen === 'depth' ? 'D' : 'W')).join(''),
        quality: await qualityOn(texts, mop.model, dense, threads),
        seconds,
        loadAverage: Math.max(load, loadAverage()),
      };
      report.runs.push(run);
      fs.writeFileSync(jsonOut, JSON.stringify(report, null, 1) + '\n');
      fs.writeFileSync(args.out, render(report));
      process.stderr.write(`${strategy} ${(100 * target).toFixed(0)}% seed ${seed}: ${Object.entries(run.quality).map(([n, q]) => `${n} ${q.perplexity.toFixed(3)}`).join(', ')} path ${run.path} (${seconds.toFixed(0)} s)\n`);
    }
  }
}
