import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { magnitudeImportance } from '../../src/mop/importance.ts';
import { type MopProgress, runMop } from '../../src/mop/mop.ts';
import { bundled } from './helpers.ts';

describe('the MoP loop', () => {
  it('records both candidates of every step, their scores, the choice, parameters, ratio and wall time', async () => {
    const { model, calibration } = await bundled();
    const { report } = await runMop(model, { target: 0.4, calibration, seed: 1 });
    assert.equal(report.strategy, 'mop');
    assert.equal(report.criterion, 'ppl');
    assert.equal(report.importance, 'amp');
    assert.deepEqual(report.calibration, calibration.description);
    const first = report.steps[0]!;
    assert.deepEqual(first.candidates.map((c) => c.branch), ['depth', 'width']);
    // At the default budget (one layer) both candidates have the same size: the lower score wins.
    const lower = first.candidates.reduce((a, b) => (b.score < a.score ? b : a));
    assert.equal(first.chosen, lower.branch);
    for (const s of report.steps) {
      for (const c of s.candidates) assert.ok(Number.isFinite(c.score) && c.score > 1, `perplexity score ${c.score}`);
      const best = Math.min(...s.candidates.map((c) => c.costPer1kParams));
      assert.equal(s.candidates.find((c) => c.branch === s.chosen)!.costPer1kParams, best, 'the candidate losing least per parameter is chosen');
      for (const c of s.candidates) assert.ok(Math.abs(c.costPer1kParams - ((c.score - s.parent.score) / c.removedParams) * 1000) < 1e-9);
      assert.ok(s.wallMs > 0);
      assert.ok(s.ratio > s.parent.ratio);
    }
    assert.equal(report.result.steps.depth + report.result.steps.width, report.steps.length);
    assert.equal(report.result.layers.length, report.result.sourceLayers.length);
    assert.ok(report.wallMs > 0);
  });

  it('the width candidate removes about what the depth candidate removes, split between attention and MLP', async () => {
    const { model, calibration } = await bundled();
    const { report } = await runMop(model, { target: 0.2, calibration });
    const [depth, width] = report.steps[0]!.candidates;
    assert.ok(Math.abs(depth!.removedParams - width!.removedParams) <= 3 * 64, `${depth!.removedParams} vs ${width!.removedParams}`);
    assert.ok(width!.removed.kvGroups && width!.removed.neurons, 'both attention groups and neurons go');
  });

  it('a smaller step budget takes more, smaller steps: a winning width branch commits only the budget', async () => {
    const { model, calibration } = await bundled();
    const coarse = await runMop(model, { target: 0.4, calibration });
    const fine = await runMop(model, { target: 0.4, calibration, stepLayers: 0.25 });
    assert.ok(fine.report.steps.length > coarse.report.steps.length);
    assert.ok(Math.abs(fine.report.result.ratio - 0.4) <= 0.005);
    for (const s of fine.report.steps) {
      if (s.chosen === 'width') assert.ok(s.committedParams <= s.budget + 3 * 64, `step ${s.step}: committed ${s.committedParams} > budget ${s.budget}`);
      assert.equal(s.parent.blocks - s.blocks, s.committedParams);
    }
  });

  it('depth can remove single attention or MLP sub-blocks instead of whole layers', async () => {
    const { model, calibration } = await bundled();
    const { report } = await runMop(model, { target: 0.3, calibration, depthUnit: 'sublayer', strategy: 'depth' });
    assert.ok(Math.abs(report.result.ratio - 0.3) <= 0.005);
    const sub = report.steps.flatMap((s) => s.candidates.flatMap((c) => c.removed.subBlocks ?? []));
    assert.ok(sub.length > 0);
    assert.ok(report.steps.every((s) => s.candidates.every((c) => c.removed.layers === undefined)));
    assert.ok(report.result.layers.some((l) => (l.heads === 0) !== (l.ffn === 0)), 'some layer keeps only one sub-block');
  });

  it('runs with the kl and cosine selection criteria and another importance criterion', async () => {
    const { model, calibration } = await bundled();
    for (const criterion of ['kl', 'cosine'] as const) {
      const { report } = await runMop(model, { target: 0.25, calibration, criterion });
      assert.equal(report.criterion, criterion);
      for (const s of report.steps) for (const c of s.candidates) assert.ok(c.score >= 0 && Number.isFinite(c.score));
    }
    const { report } = await runMop(model, { target: 0.25, calibration, importance: magnitudeImportance, strategy: 'width' });
    assert.equal(report.importance, 'magnitude');
  });

  it('reports progress and stops when its signal is aborted', async () => {
    const { model, calibration } = await bundled();
    const seen: MopProgress[] = [];
    await runMop(model, { target: 0.3, calibration, onProgress: (p) => seen.push(p) });
    assert.ok(seen.length >= 3);
    assert.ok(seen.every((p) => p.totalEstimate >= p.step));
    assert.match(seen.at(-1)!.message, /^done/);

    const ac = new AbortController();
    let steps = 0;
    await assert.rejects(
      runMop(model, {
        target: 0.5,
        calibration,
        stepLayers: 0.25,
        signal: ac.signal,
        onProgress: (p) => {
          if (p.message.includes('took') && ++steps === 1) ac.abort();
        },
      }),
      (e: unknown) => e instanceof Error && e.name === 'AbortError',
    );
  });
});
