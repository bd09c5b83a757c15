import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadCalibration } from '../../src/mop/calibration.ts';
import { runMop } from '../../src/mop/mop.ts';
import type { PruneReport } from '../../src/mop/report.ts';
import { bundled } from './helpers.ts';

/** Everything in a report except wall-clock times. */
function choices(r: PruneReport) {
  return {
    steps: r.steps.map((s) => ({ parent: s.parent, candidates: s.candidates, chosen: s.chosen, blocks: s.blocks })),
    result: r.result,
  };
}

describe('determinism', () => {
  it('the same seed gives the same pruned spec, weights and report choices', async () => {
    const { model, tokenizer } = await bundled();
    const run = async (seed: number) => {
      const calibration = await loadCalibration(tokenizer, { samples: 8, seqLen: 64, seed });
      return runMop(model, { target: 0.35, calibration, seed, stepLayers: 0.5 });
    };
    const a = await run(7);
    const b = await run(7);
    assert.deepEqual(a.model.spec, b.model.spec);
    assert.deepEqual(choices(a.report), choices(b.report));
    for (const [name, t] of a.model.weights) assert.deepEqual(t.data, b.model.weights.get(name)!.data, name);
    assert.ok(a.report.steps.length >= 2);

    const c = await run(8);
    assert.notDeepEqual(c.report.calibration, a.report.calibration);
    assert.notDeepEqual(choices(c.report).steps.map((s) => s.candidates.map((x) => x.score)), choices(a.report).steps.map((s) => s.candidates.map((x) => x.score)), 'another seed draws other calibration text');
  });
});
