import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { writeHfDirectory } from '../../src/runtime/model/hf.ts';
import { loadModel } from '../../src/runtime/model/load.ts';
import { parameterCounts } from '../../src/runtime/model/spec.ts';
import { MopInputError } from '../../src/mop/errors.ts';
import { runMop, TARGET_TOLERANCE } from '../../src/mop/mop.ts';
import { removeNeurons } from '../../src/mop/surgery.ts';
import { tempDir } from '../runtime/model-helpers.ts';
import { bundled } from './helpers.ts';

/**
 * `uniform`: every kept layer keeps the same heads and MLP width with both sub-blocks, depth still
 * chosen freely; the written config is transformers' plain LlamaConfig, and the ratio lands on
 * the target like a per-layer prune.
 */
describe('uniform pruning', () => {
  for (const [strategy, target, widthMultiple] of [['mop', 0.3, 1], ['width', 0.45, 1], ['mop', 0.5, 4], ['depth', 0.3, 1]] as const) {
    it(`${strategy} at ${target * 100}%${widthMultiple > 1 ? `, width multiple ${widthMultiple}` : ''}: every kept layer the same shape, on target, written without layer_shapes`, async () => {
      const { model, calibration } = await bundled();
      const { model: pruned, report } = await runMop(model, { target, strategy, calibration, threads: 1, uniform: true, widthMultiple });
      const [first, ...rest] = pruned.spec.layers;
      assert.ok(first!.heads > 0 && first!.ffn > 0, JSON.stringify(first));
      for (const l of rest) assert.deepEqual(l, first);
      assert.equal(first!.ffn % widthMultiple, 0);
      const ratio = 1 - parameterCounts(pruned.spec).blocks / parameterCounts(model.spec).blocks;
      assert.ok(Math.abs(ratio - target) <= TARGET_TOLERANCE, `ratio ${ratio}`);
      assert.equal(report.options.uniform, true);
      const dir = await tempDir('uniform');
      await writeHfDirectory(pruned, dir);
      const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      assert.equal(config['layer_shapes'], undefined);
      assert.equal(config['intermediate_size'], first!.ffn);
      assert.equal(config['num_key_value_heads'], first!.kvHeads);
      assert.equal(config['num_hidden_layers'], pruned.spec.layers.length);
    });
  }

  it('refuses sub-block depth and an input whose layers differ, in one line saying what to do', async () => {
    const { model, calibration } = await bundled();
    await assert.rejects(runMop(model, { target: 0.3, calibration, uniform: true, depthUnit: 'sublayer' }), (e: Error) => e instanceof MopInputError && /depth unit must be layer/.test(e.message));
    const uneven = removeNeurons(model, 2, [0, 1, 2]);
    await assert.rejects(runMop(uneven, { target: 0.3, calibration, uniform: true }), (e: Error) => e instanceof MopInputError && /same heads and MLP width/.test(e.message) && /L2:8\/4\/169/.test(e.message));
  });
});
