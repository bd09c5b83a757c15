/**
 * Quality against the final-recovery budget: the bundled model pruned once with the default recipe
 * (`mop prune --target 0.4`: MoP, every candidate recovered) up to the final recovery, then that
 * same model given final recoveries of several budgets (steps; optionally other KL shares and
 * learning rates), each measured on three held-out texts (scripts/lib/recovered-quality.ts):
 * perplexity, × dense, KL to dense, and wall time with the load average beside it. Writes a
 * Markdown report and its JSON after every run.
 *
 *   npm run bench:recovery-budget -- [--budgets 100,300,1000,3000] [--kd-alphas 0.75] [--lrs 2e-3]
 *                                    [--target 0.4] [--recovery-seq-len T] [--recovery-batch B] [--recovery-self-tokens N] [--threads N]
 *                                    [--out docs/recovery-budget-report.md]
 *                                    [--render-only [--also OTHER.json,…]]
 *   --render-only: rewrite the report from its JSON; --also adds other runs' JSON (other recipes) as sections.
 */
import fs from 'node:fs';
import os from 'node:os';
import { loadCalibration } from '../src/mop/calibration.ts';
import { runMop } from '../src/mop/mop.ts';
import { runRecovery } from '../src/mop/mop-recovery.ts';
import { defaultModelPath, loadModel } from '../src/runtime/model/load.ts';
import { createTokenizer } from '../src/runtime/tokenizer/create.ts';
import { defaultPruneSettings, type PruneRecipe } from '../src/service/prune/prune-options.ts';
import { prepareRecovery } from '../src/service/prune/run-prune.ts';
import { intOption, listOption, numberListOption, numberOption } from './lib/option-values.ts';
import { evalTexts, loadAverage, qualityOn, type TextQuality } from './lib/recovered-quality.ts';
import { parseScriptArgs } from './lib/script-args.ts';

const args = parseScriptArgs(import.meta.url, {
  budgets: { type: 'string', default: '100,300,1000,3000' },
  'kd-alphas': { type: 'string' },
  lrs: { type: 'string' },
  target: { type: 'string', default: '0.4' },
  'recovery-seq-len': { type: 'string' },
  'recovery-batch': { type: 'string' },
  'recovery-self-tokens': { type: 'string' },
  threads: { type: 'string', default: String(os.availableParallelism()) },
  out: { type: 'string', default: 'docs/recovery-budget-report.md' },
  'render-only': { type: 'boolean', default: false },
  also: { type: 'string' },
});
const tableDefaults = defaultPruneSettings();
// The whole prune's recovery shape (candidates and final) can differ from the table's.
const defaults = {
  ...tableDefaults,
  ...(args['recovery-seq-len'] !== undefined && { recoverySeqLen: intOption('recovery-seq-len', args['recovery-seq-len'], 2) }),
  ...(args['recovery-batch'] !== undefined && { recoveryBatch: intOption('recovery-batch', args['recovery-batch'], 1) }),
  ...(args['recovery-self-tokens'] !== undefined && { recoverySelfTokens: intOption('recovery-self-tokens', args['recovery-self-tokens'], 0) }),
};
const target = numberOption('target', args.target, (n) => n > 0 && n < 1);
const budgets = numberListOption('budgets', args.budgets, (n) => Number.isInteger(n) && n >= 0);
const alphas = args['kd-alphas'] ? numberListOption('kd-alphas', args['kd-alphas'], (n) => n >= 0 && n <= 1) : [defaults.recoveryKdAlpha];
const lrs = args.lrs ? numberListOption('lrs', args.lrs, (n) => n > 0) : [defaults.recoveryLr];
const threads = Number(args.threads);
const jsonOut = args.out.replace(/\.md$/, '') + '.json';

interface Row {
  steps: number;
  kdAlpha: number;
  lr: number;
  /** Final recovery wall seconds, and the whole prune's (recovery text, MoP with candidate recoveries, this final). */
  finalSeconds: number;
  totalSeconds: number;
  loadAverage: number;
  quality: Record<string, TextQuality>;
}

interface Report {
  command: string;
  cpu: string;
  target: number;
  /** selfTokens: tokens sampled from the model and added to the recovery text (absent in runs before that default: none). */
  defaults: { finalSteps: number; kdAlpha: number; lr: number; batch: number; seqLen: number; candidateSteps: number; selfTokens?: number };
  dense: Record<string, TextQuality>;
  texts: Record<string, number>;
  pruneSeconds: number;
  /** Reading (and sampling) the recovery text, seconds; its sources. Absent in runs before these were recorded. */
  recoveryTextSeconds?: number;
  recoveryText?: string[];
  pruneLoadAverage: number;
  path: string;
  rows: Row[];
}

/** The rows of one run; "(default)" marks the prune table's current default recipe. */
function table(r: Report): string[] {
  const names = Object.keys(r.dense);
  const lines = [
    `| final steps | KL share α | lr | ${names.map((n) => `${n} ppl (× dense) | ${n} KL`).join(' | ')} | final s | total s | load avg |`,
    `| ---: | ---: | ---: | ${names.map(() => '---: | ---:').join(' | ')} | ---: | ---: | ---: |`,
  ];
  const t = tableDefaults;
  for (const row of r.rows) {
    const cells = names.map((n) => {
      const q = row.quality[n]!;
      return `${q.perplexity.toFixed(3)} (${(q.perplexity / r.dense[n]!.perplexity).toFixed(3)}×) | ${q.kl.toFixed(4)}`;
    });
    const isDefault =
      row.steps === t.finalRecoverySteps && row.kdAlpha === t.recoveryKdAlpha && row.lr === t.recoveryLr && r.defaults.batch === t.recoveryBatch && r.defaults.seqLen === t.recoverySeqLen && (r.defaults.selfTokens ?? 0) === t.recoverySelfTokens;
    lines.push(`| ${isDefault ? `**${row.steps}** (default)` : row.steps} | ${row.kdAlpha} | ${row.lr} | ${cells.join(' | ')} | ${row.finalSeconds.toFixed(0)} | ${row.totalSeconds.toFixed(0)} | ${row.loadAverage.toFixed(1)} |`);
  }
  return lines;
}

const setting = (r: Report) =>
  `the bundled model pruned to ${(100 * r.target).toFixed(0)}% by MoP with ${r.defaults.candidateSteps} recovery steps per candidate (batch ${r.defaults.batch} × ${r.defaults.seqLen}, kd; path ${r.path}) once, in ${r.pruneSeconds.toFixed(0)} s at load average ${r.pruneLoadAverage.toFixed(1)}, then final recoveries of each budget from that same model; ` +
  (r.recoveryText
    ? `recovery text ${r.recoveryText.join(' + ')} (read and sampled in ${r.recoveryTextSeconds!.toFixed(0)} s); "total" adds the recovery text, the prune and the final recovery.`
    : 'recovery text the bundled TinyStories slices only (the default before sampled text was added); "total" adds the final recovery to the prune.');

/** The main run's report, then each further run (other recipes) as a section of its own. */
function render(r: Report, more: Report[] = []): string {
  const names = Object.keys(r.dense);
  const lines = [
    '# Quality against the final-recovery budget',
    '',
    `\`${r.command}\` on ${r.cpu}: ${setting(r)} Wall times ran on a 2-core machine shared with other jobs: read them with the load average beside them (2 = the cores busy).`,
    '',
    `Held-out texts (none is read by calibration or recovery; scripts/lib/recovered-quality.ts): ${names.map((n) => `\`${n}\` (${r.texts[n]} tokens)`).join(', ')}. Dense perplexity: ${names.map((n) => `${n} ${r.dense[n]!.perplexity.toFixed(3)}`).join(', ')}.`,
    '',
    ...table(r),
  ];
  for (const m of more) lines.push('', `## \`${m.command}\``, '', `${setting(m)}`, '', ...table(m));
  return lines.join('\n') + '\n';
}

function save(r: Report): void {
  fs.writeFileSync(jsonOut, JSON.stringify(r, null, 1) + '\n');
  fs.writeFileSync(args.out, render(r));
}

if (args['render-only']) {
  const read = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8')) as Report;
  fs.writeFileSync(args.out, render(read(jsonOut), args.also ? listOption(args.also).map(read) : []));
  process.exit(0);
}

const model = await loadModel(defaultModelPath());
const tokenizer = createTokenizer(model.tokenizer);
const texts = evalTexts(tokenizer);
const dense = { spec: model.spec, weights: model.weights };
const calibration = await loadCalibration(tokenizer, { samples: defaults.samples, seqLen: defaults.seqLen, seed: defaults.seed });
const recipe: PruneRecipe = { ...defaults, target, finalRecoverySteps: 0 };
const textStart = performance.now();
const recovery = (await prepareRecovery(recipe, { tokenizer, model, threads, calibration }))!;
const recoveryTextSeconds = (performance.now() - textStart) / 1000;
const pruneLoad = loadAverage();
const t0 = performance.now();
const mop = await runMop(model, { target, calibration, seed: defaults.seed, threads, criterion: recipe.criterion, depthRule: recipe.depthRule, recovery });
const pruneSeconds = (performance.now() - t0) / 1000;
const report: Report = {
  command: `npm run bench:recovery-budget${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`,
  cpu: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}`,
  target,
  defaults: { finalSteps: defaults.finalRecoverySteps, kdAlpha: defaults.recoveryKdAlpha, lr: defaults.recoveryLr, batch: defaults.recoveryBatch, seqLen: defaults.recoverySeqLen, candidateSteps: defaults.recoverySteps, selfTokens: defaults.recoverySelfTokens },
  dense: await qualityOn(texts, dense, dense, threads),
  texts: Object.fromEntries(texts.map((t) => [t.name, t.windows.tokens])),
  pruneSeconds,
  recoveryTextSeconds,
  recoveryText: recovery.description?.sources ?? [],
  pruneLoadAverage: Math.max(pruneLoad, loadAverage()),
  path: mop.report.steps.map((s) => (s.chosen === 'depth' ? 'D' : 'W')).join(''),
  rows: [],
};
process.stderr.write(`pruned to ${(100 * mop.report.result.ratio).toFixed(1)}% in ${pruneSeconds.toFixed(0)} s, path ${report.path}\n`);
for (const steps of budgets) {
  for (const kdAlpha of alphas) {
    for (const lr of lrs) {
      const load = loadAverage();
      const run = await runRecovery(mop.model, { ...recovery, recipe: { ...recovery.recipe, kdAlpha, lr } }, { steps }, {});
      const quality = await qualityOn(texts, run.model, dense, threads);
      const row: Row = { steps, kdAlpha, lr, finalSeconds: run.record.wallSeconds, totalSeconds: recoveryTextSeconds + pruneSeconds + run.record.wallSeconds, loadAverage: Math.max(load, loadAverage()), quality };
      report.rows.push(row);
      save(report);
      process.stderr.write(`${steps} steps α ${kdAlpha} lr ${lr}: ${Object.entries(quality).map(([n, q]) => `${n} ${(q.perplexity / report.dense[n]!.perplexity).toFixed(3)}×`).join(', ')} (${row.finalSeconds.toFixed(0)} s, load ${row.loadAverage.toFixed(1)})\n`);
    }
  }
}
