import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { defaultCalibrationPath } from '../../src/mop/calibration.ts';
import { runMop } from '../../src/mop/mop.ts';
import { parameterCounts } from '../../src/runtime/model/spec.ts';
import { defaultPruneSettings, type PruneRecipe, pruneOptions } from '../../src/service/prune/prune-options.ts';
import { pruneStoreKey, recipeOf } from '../../src/service/prune/prune-store-key.ts';
import { bundled } from '../mop/helpers.ts';
import { sha256, tempDir } from './model-store-helpers.ts';

const source = sha256('source model');
const base: PruneRecipe = { ...defaultPruneSettings(), target: 0.4 };
const key = async (r: PruneRecipe, referenceBlocks = 1000, src = source) => (await pruneStoreKey(src, r, referenceBlocks)).key;

/** Another valid value for an option, from its kind in the table. */
function otherValue(o: (typeof pruneOptions)[number], current: unknown): unknown {
  const t = o.type;
  // An option unset by default (a budget that replaces another): any valid value sets it.
  if (current === undefined && (t.kind === 'int' || t.kind === 'number')) return t.kind === 'int' ? t.min + 1 : t.max / 2;
  switch (t.kind) {
    case 'choice':
      return t.choices.find((c) => c !== current);
    case 'int':
      return (current as number) + 1 <= t.max ? (current as number) + 1 : t.min;
    case 'fraction':
    case 'number':
      return (current as number) / 2;
    case 'text':
      return undefined; // files: see the calibration test
    case 'flag':
      return !current;
  }
}

describe('prune store keys', () => {
  it('change with every option of the shared prune table (generated from the table)', async () => {
    const baseKey = await key(base);
    for (const o of pruneOptions) {
      if (o.type.kind === 'text') continue;
      const changed = { ...base, [o.key]: otherValue(o, base[o.key]) } as PruneRecipe;
      assert.notEqual(await key(changed), baseKey, `changing ${o.key} must change the key`);
    }
  });

  it('change with a recipe field the table does not know yet (a later recovery setting is covered as it is added)', async () => {
    assert.notEqual(await key({ ...base, recoveryEpochs: 2 } as PruneRecipe), await key(base));
  });

  it('change with the source digest and the ratio reference', async () => {
    assert.notEqual(await key(base, 1000, sha256('another model')), await key(base));
    assert.notEqual(await key(base, 999), await key(base));
  });

  it('depend on the calibration text’s bytes, not its path, and the default is the bundled text', async (t) => {
    const dir = await tempDir(t);
    const copy = path.join(dir, 'copy.txt');
    await fs.copyFile(defaultCalibrationPath(), copy);
    assert.equal(await key({ ...base, calibration: copy }), await key(base));
    await fs.writeFile(copy, 'Another calibration text.');
    assert.notEqual(await key({ ...base, calibration: copy }), await key(base));
    await assert.rejects(key({ ...base, calibration: path.join(dir, 'missing.txt') }), /calibration file .*missing\.txt: no such file/);
  });

  it('change when any file option (calibration, recovery data, …) names a file with other bytes than its default', async (t) => {
    const dir = await tempDir(t);
    const other = path.join(dir, 'other.txt');
    await fs.writeFile(other, 'Some other text.');
    const files = pruneOptions.filter((o) => o.type.kind === 'text');
    assert.ok(files.length >= 1);
    for (const o of files) assert.notEqual(await key({ ...base, [o.key]: other } as PruneRecipe), await key(base), `${o.key} set to another file must change the key`);
  });

  it('leave out where the result goes (source, id, activate)', async () => {
    assert.equal(await key(recipeOf({ ...base, source: 'mop-40', id: 'x', activate: false })), await key(base));
  });

  it('record the whole recipe with the calibration digest in place of its path', async () => {
    const k = await pruneStoreKey(source, base, 1000);
    assert.equal(k.recipe.target, 0.4);
    assert.equal(k.recipe.referenceBlocks, 1000);
    assert.deepEqual(k.recipe.calibration, { sha256: await (await import('../../src/service/model-store/index.ts')).digestFile(defaultCalibrationPath()) });
  });

  it('record the sampled text added to the recovery files, so entries made when the same values meant the files alone do not answer', async () => {
    assert.equal((await pruneStoreKey(source, base, 1000)).recipe.recoverySelfAdded, base.recoverySelfTokens);
    for (const other of [{ ...base, recoverySelfTokens: 0 }, { ...base, recovery: 'none' as const }, { ...base, recoveryData: 'self' }]) {
      assert.equal((await pruneStoreKey(source, other, 1000)).recipe.recoverySelfAdded, undefined, JSON.stringify(other).slice(0, 80));
    }
  });

  it('spell out the defaults runMop actually uses: the option table’s defaults are MoP’s (as its report records them)', async () => {
    const { model, calibration } = await bundled();
    const { report } = await runMop(model, { target: 0.1, calibration });
    const d = defaultPruneSettings();
    assert.deepEqual(
      { strategy: report.strategy, criterion: report.criterion, importance: report.importance, ...report.options },
      { strategy: d.strategy, criterion: d.criterion, importance: d.importance, stepLayers: d.stepLayers, depthUnit: d.depthUnit, widthSplit: d.widthSplit, widthNormalize: d.widthNormalize },
    );
    assert.equal(report.referenceBlocks, parameterCounts(model.spec).blocks);
  });
});
