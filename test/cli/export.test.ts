import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writePrunedModel } from '../../src/mop/export.ts';
import { runMop as prune } from '../../src/mop/mop.ts';
import { readGguf } from '../../src/runtime/model/gguf-model.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { runMop } from '../helpers/run-cli.ts';
import { bundled } from '../mop/helpers.ts';
import { postJson, startTestServer } from '../server/helpers/server.ts';

describe('mop export', () => {
  let dir: string;
  let prunedDir: string;
  before(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), 'mop-cli-export-'));
    prunedDir = join(dir, 'mop-40');
    const { model, calibration } = await bundled();
    const { model: pruned, report } = await prune(model, { target: 0.4, calibration, depthUnit: 'sublayer' });
    await writePrunedModel(prunedDir, pruned, model, report);
  });

  let server: RunningServer | undefined;
  after(async () => {
    await server?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('writes a pruned directory as a Q8_0 GGUF that reads back with its shapes and tokenizer, and `mop serve -m` serves it', async () => {
    const out = join(dir, 'mop-40.q8_0.gguf');
    const r = await runMop(['export', '--model', prunedDir, '--dtype', 'q8_0', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^wrote .*mop-40\.q8_0\.gguf: gguf q8_0, \d layers \(.*0h\/0kv.*\), [\d,]+ parameters, [\d.]+ MiB/);
    const back = await readGguf(out);
    const source = (await bundled()).tokenizer;
    const text = 'Once upon a time, there was a little dog named Max.';
    assert.deepEqual(createTokenizer(back.tokenizer).encode(text), source.encode(text));
    assert.ok(back.spec.layers.some((l) => l.heads === 0), 'the sublayer prune keeps an attention-free layer');
    server = await startTestServer({ model: out });
    const res = await postJson(server.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    assert.equal(res.status, 200);
  });

  it('writes a Hugging Face directory in f16 from the MOP_* environment', async () => {
    const out = join(dir, 'hf16');
    const r = await runMop(['export'], { MOP_MODEL: prunedDir, MOP_EXPORT_FORMAT: 'hf', MOP_EXPORT_DTYPE: 'f16', MOP_OUT: out });
    assert.equal(r.code, 0, r.stderr);
    const config = JSON.parse(await fs.readFile(join(out, 'config.json'), 'utf8')) as { torch_dtype?: string };
    assert.equal(config.torch_dtype, 'float16');
  });

  it('refuses bad requests in one line that says what would do, writing nothing', async () => {
    const cases: [string[], RegExp][] = [
      [['--format', 'hf', '--dtype', 'q4_0'], /--format hf stores f32 or f16 .*use --format gguf for q4_0/],
      [['--dtype', 'bf16'], /unknown export dtype 'bf16'; one of f32, f16, q8_0, q4_0/],
      [['--format', 'onnx'], /unknown export format 'onnx'; one of gguf, hf/],
    ];
    for (const [args, message] of cases) {
      const out = join(dir, 'bad.gguf');
      const r = await runMop(['export', '--model', prunedDir, '--out', out, ...args]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      await assert.rejects(fs.stat(out));
    }
    const existing = join(dir, 'exists.gguf');
    await fs.writeFile(existing, 'keep me');
    const r = await runMop(['export', '--model', prunedDir, '--out', existing]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /exists; remove it or choose another output path/);
    assert.equal(await fs.readFile(existing, 'utf8'), 'keep me');
  });
});
