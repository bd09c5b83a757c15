import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { generateText } from '../../src/runtime/engine/generate.ts';
import { openModel } from '../../src/runtime/engine/open-model.ts';
import { defaultSamplingParams } from '../../src/runtime/engine/sampling-params.ts';
import { syntheticPresets, syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import { runMop } from '../helpers/run-cli.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});
async function scratch(): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-synth-'));
  dirs.push(d);
  return d;
}

describe('mop synth', () => {
  it('writes the tiny preset as a directory the real loader opens and generates from, with the benchmarks\' weights', async () => {
    const out = path.join(await scratch(), 'tiny');
    const r = await runMop(['synth', '--preset', 'tiny', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /synthetic 'tiny', 4 layers, hidden 64/);

    const opened = await openModel({ modelPath: out, device: 'cpu', threads: 1 });
    try {
      const spec = syntheticSpec(syntheticPresets.tiny);
      assert.deepEqual(opened.model.spec, spec);
      const expected = syntheticWeights(spec, 1);
      const name = 'model.layers.0.mlp.down_proj.weight';
      assert.deepEqual(opened.model.weights.get(name)!.data, expected.get(name)!.data, 'float32 weights are the generator\'s, seed 1');
      const prompt = opened.tokenizer.encode('Once upon a time');
      assert.ok(prompt.length > 1, 'the synthetic tokenizer encodes text');
      const g = await generateText(opened.session, opened.tokenizer, { promptTokens: prompt, maxTokens: 1, sampling: defaultSamplingParams({ temperature: 0 }), ignoreEos: true });
      assert.equal(g.tokens.length, 1);
    } finally {
      await opened.session.release();
    }
  });

  it('takes the preset, output, seed and dtype from MOP_SYNTH_* and stores bfloat16 when asked', async () => {
    const out = path.join(await scratch(), 'bf16');
    const r = await runMop(['synth'], { MOP_SYNTH_PRESET: 'tiny', MOP_SYNTH_OUT: out, MOP_SYNTH_SEED: '7', MOP_SYNTH_DTYPE: 'bfloat16' });
    assert.equal(r.code, 0, r.stderr);
    const config = JSON.parse(await fs.readFile(path.join(out, 'config.json'), 'utf8'));
    assert.equal(config.torch_dtype, 'bfloat16');
    const g = await runMop(['generate', '-m', out, '-q', '-n', '2', '-t', '0', '--threads', '1', '--device', 'cpu']);
    assert.equal(g.code, 0, g.stderr);
  });

  it('refuses a non-empty output directory in one line and leaves it alone', async () => {
    const out = await scratch();
    await fs.writeFile(path.join(out, 'keep.txt'), 'mine');
    const r = await runMop(['synth', '--preset', 'tiny', '--out', out]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mop: error: --out .* is not empty/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.deepEqual(await fs.readdir(out), ['keep.txt']);
  });

  it('refuses an unknown preset or dtype in one line, naming the choices', async () => {
    const out = path.join(await scratch(), 'never');
    const p = await runMop(['synth', '--preset', '7b', '--out', out]);
    assert.equal(p.code, 1);
    assert.equal(p.stderr, "mop: error: unknown preset '7b'; one of tiny, 100m, 1b, tinyllama-1b, 500m\n");
    const d = await runMop(['synth', '--preset', 'tiny', '--dtype', 'int8', '--out', out]);
    assert.equal(d.code, 1);
    assert.match(d.stderr, /^mop: error: unknown dtype 'int8'; one of float32, float16, bfloat16\n$/);
    await assert.rejects(fs.stat(out), { code: 'ENOENT' });
  });
});
