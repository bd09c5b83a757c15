/**
 * bench:quality's "With recovery fine-tuning" section: per target each strategy without and with
 * recovery, KL, the target check, the recovery knob sweep and where MoP + recovery loses.
 */
import type { PruneRecipe } from '../../src/service/prune/prune-options.ts';
import { f, pct, type QualityContext, type Row } from './quality-rows.ts';
import { uniformVariants } from './uniform-report.ts';

const recipeOverrides = (r: Partial<PruneRecipe>) => (Object.keys(r).length ? Object.entries(r).map(([k, v]) => `${k} ${String(v)}`).join(', ') : 'default recipe');

/** The whole section: its lines, ending with a blank one. */
export function recoveryLines(c: QualityContext): string[] {
  const { rows } = c;
  // The uniform section's rows are reported there.
  const rec = rows.filter((r) => r.recovery && !(Object.values(uniformVariants) as string[]).includes(r.variant));
  const compared = recoveredComparison(c);
  return [...recoveryIntroLines(c, rec.length), ...compared.lines, ...recoveredKlLines(c), ...recoveryNoteLines(c, rec), ...recoveryKnobLines(c, rec), ...recoveryVerdictLines(c, compared.verdicts, compared.worstLoss), ...recoveryKnobTable(c, rec), ''];
}

/** The recipe, how many recovered runs ran, and the comparison table's header. */
function recoveryIntroLines(c: QualityContext, recoveredRuns: number): string[] {
  const { tableDefaults, plannedRecovered } = c;
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
function recoveredComparison(c: QualityContext): { lines: string[]; verdicts: string[]; worstLoss: number } {
  const { targets, get, dense } = c;
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
function recoveredKlLines(c: QualityContext): string[] {
  const { targets, get } = c;
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
function recoveryNoteLines(c: QualityContext, rec: Row[]): string[] {
  const { get, dense, sweepTarget } = c;
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
function recoveryKnobLines(c: QualityContext, rec: Row[]): string[] {
  const { get, sweepTarget } = c;
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
function recoveryVerdictLines(c: QualityContext, verdicts: string[], worstLoss: number): string[] {
  const { targets, get, seed } = c;
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
function recoveryKnobTable(c: QualityContext, rec: Row[]): string[] {
  const { get, dense, sweepTarget } = c;
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
