import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { defaultCalibrationPath } from '../../src/mop/calibration.ts';
import { runMop } from '../../src/mop/mop.ts';
import { parameterCounts } from '../../src/runtime/model/spec.ts';
import { syntheticPresets, syntheticSpec } from '../../src/runtime/model/synthetic.ts';
import { MOP_DEFAULTS, pruneRecipe, storeKey } from '../../src/service/model-store/index.ts';
import { bundled } from '../mop/helpers.ts';
import { sha256, tempDir } from './model-store-helpers.ts';

const source = sha256('source model');
const spec = syntheticSpec(syntheticPresets.tiny);
const base = { target: 0.4, samples: 32, seqLen: 128, seed: 0 };

describe('prune recipes', () => {
  it('give one key whether a setting is left unset or set to MoP’s default', async () => {
    const unset = await pruneRecipe(base, spec);
    const explicit = await pruneRecipe({ ...base, ...MOP_DEFAULTS, calibrationPath: defaultCalibrationPath(), referenceBlocks: parameterCounts(spec).blocks }, spec);
    assert.equal(storeKey(source, explicit), storeKey(source, unset));
  });

  it('give another key for another setting, reference, recovery or calibration text', async (t) => {
    const dir = await tempDir(t);
    const other = path.join(dir, 'other.txt');
    await fs.writeFile(other, 'Another calibration text.');
    const keys = await Promise.all(
      [base, { ...base, stepLayers: 0.5 }, { ...base, importance: 'magnitude' }, { ...base, referenceBlocks: 1 }, { ...base, recovery: { steps: 10 } }, { ...base, calibrationPath: other }].map(
        async (s) => storeKey(source, await pruneRecipe(s, spec)),
      ),
    );
    assert.equal(new Set(keys).size, keys.length);
  });

  it('depend on the calibration file’s bytes, not its path', async (t) => {
    const dir = await tempDir(t);
    const copy = path.join(dir, 'copy.txt');
    await fs.copyFile(defaultCalibrationPath(), copy);
    assert.equal(storeKey(source, await pruneRecipe({ ...base, calibrationPath: copy }, spec)), storeKey(source, await pruneRecipe(base, spec)));
  });

  it('spell out the defaults runMop actually uses (as its report records them)', async () => {
    const { model, calibration } = await bundled();
    const { report } = await runMop(model, { target: 0.1, calibration });
    assert.deepEqual(
      { strategy: report.strategy, criterion: report.criterion, importance: report.importance, ...report.options },
      MOP_DEFAULTS,
    );
    assert.equal(report.referenceBlocks, parameterCounts(model.spec).blocks);
  });
});
