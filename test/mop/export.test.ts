import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadModel } from '../../src/runtime/model/load.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { writePrunedModel } from '../../src/mop/export.ts';
import { runMop } from '../../src/mop/mop.ts';
import { readReferenceBlocks, REPORT_FILE } from '../../src/mop/report.ts';
import { referenceForward } from '../helpers/reference-forward.ts';
import { bundled } from './helpers.ts';

describe('pruned checkpoint on disk', () => {
  it('reloads with loadModel: same spec, same weights, same logits, same tokenizer, and its report', async () => {
    const { model, tokenizer, calibration } = await bundled();
    const { model: pruned, report } = await runMop(model, { target: 0.3, calibration });
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-export-'));
    try {
      await writePrunedModel(dir, pruned, model, report);
      const back = await loadModel(dir);
      assert.equal(back.format, 'hf');
      assert.deepEqual(back.spec, pruned.spec);
      for (const [name, t] of pruned.weights) assert.deepEqual(back.weights.get(name)!.data, t.data, name);
      const tokens = [1, ...tokenizer.encode('Once upon a time, there was a little dog.', { addBos: false })];
      assert.deepEqual(referenceForward(back.spec, back.weights, tokens), referenceForward(pruned.spec, pruned.weights, tokens));
      const text = 'Lily saw a big red ball in the park. "Can I play?" she asked.';
      assert.deepEqual(createTokenizer(back.tokenizer).encode(text), tokenizer.encode(text));
      const saved = JSON.parse(await fs.readFile(path.join(dir, REPORT_FILE), 'utf8'));
      assert.deepEqual(saved.result.layers, pruned.spec.layers);
      assert.equal(await readReferenceBlocks(dir), report.referenceBlocks);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('pruning a pruned directory again measures the ratio against the original dense model', async () => {
    const { model, calibration } = await bundled();
    const first = await runMop(model, { target: 0.2, strategy: 'width', calibration });
    const again = await runMop(first.model, { target: 0.3, strategy: 'width', calibration, referenceBlocks: first.report.referenceBlocks });
    assert.ok(Math.abs(again.report.result.ratio - 0.3) <= 0.005);
    assert.equal(again.report.referenceBlocks, first.report.referenceBlocks);
  });
});
