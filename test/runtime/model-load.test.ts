import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { writeHfDirectory } from '../../src/runtime/model/hf.ts';
import { defaultModelPath, detectFormat, loadModel } from '../../src/runtime/model/load.ts';
import { ModelFormatError } from '../../src/runtime/model/spec.ts';
import { assertSameWeights, loadStories, minimalTokenizerJson, tempDir } from './model-helpers.ts';

test('defaultModelPath points at the bundled stories260K checkpoint', () => {
  const p = defaultModelPath();
  assert.ok(p.endsWith(join('models', 'stories260K', 'stories260K.bin')));
  assert.ok(existsSync(p));
  assert.ok(existsSync(join(dirname(p), '..', '..', 'package.json')));
});

test('loadModel detects llama2.c, GGUF and Hugging Face checkpoints', async () => {
  const ref = await loadStories();
  const bin = await loadModel(defaultModelPath());
  assert.equal(bin.format, 'llama2c');
  assertSameWeights(bin.weights, ref.weights);
  const gguf = await loadModel(join(dirname(defaultModelPath()), 'stories260K.gguf'));
  assert.equal(gguf.format, 'gguf');
  assertSameWeights(gguf.weights, ref.weights);
  const dir = await tempDir('load-hf');
  await writeHfDirectory(ref, dir, { tokenizerJson: minimalTokenizerJson });
  const hf = await loadModel(dir);
  assert.equal(hf.format, 'hf');
  assert.deepEqual(hf.spec, ref.spec);
});

test('a GGUF is recognised by its magic whatever its name', async () => {
  const dir = await tempDir('load-magic');
  const p = join(dir, 'model.weights');
  await writeFile(p, await readFile(join(dirname(defaultModelPath()), 'stories260K.gguf')));
  assert.equal(await detectFormat(p), 'gguf');
});

test('a missing path is a ModelFormatError that lists the accepted formats', async () => {
  const p = join(await tempDir('load-missing'), 'nope.bin');
  await assert.rejects(loadModel(p), (e: Error) => {
    assert.ok(e instanceof ModelFormatError);
    assert.ok(e.message.includes(`no model at ${p}`), e.message);
    for (const f of ['llama2.c', 'GGUF', 'config.json']) assert.ok(e.message.includes(f), `mentions ${f}`);
    return true;
  });
});

test('directories without config.json and unknown files are refused clearly', async () => {
  const dir = await tempDir('load-unknown');
  await assert.rejects(loadModel(dir), (e: Error) => e instanceof ModelFormatError && e.message.includes('without config.json'));
  const p = join(dir, 'weights.txt');
  await writeFile(p, 'hello');
  await assert.rejects(loadModel(p), (e: Error) => e instanceof ModelFormatError && e.message.includes('cannot tell the format'));
});

test('truncated checkpoints of every format are reported as truncation through loadModel', async () => {
  const ref = await loadStories();
  const dir = await tempDir('load-trunc');
  const hfDir = join(dir, 'hf');
  await writeHfDirectory(ref, hfDir, { tokenizerJson: minimalTokenizerJson });
  const st = join(hfDir, 'model.safetensors');
  const src = dirname(defaultModelPath());
  await writeFile(join(dir, 'tok512.bin'), await readFile(join(src, 'tok512.bin')));
  const cases: [string, Buffer][] = [
    [join(dir, 'cut.bin'), (await readFile(defaultModelPath())).subarray(0, 500_000)],
    [join(dir, 'cut.gguf'), (await readFile(join(src, 'stories260K.gguf'))).subarray(0, 500_000)],
    [st, (await readFile(st)).subarray(0, 500_000)],
  ];
  for (const [file, bytes] of cases) {
    await writeFile(file, bytes);
    const at = file === st ? hfDir : file;
    await assert.rejects(loadModel(at), (e: Error) => {
      assert.ok(e instanceof ModelFormatError, `${file}: ${e.name}: ${e.message}`);
      assert.match(e.message, new RegExp(`truncated: .*has 500000 bytes, needs \\d+`));
      assert.ok(e.message.includes(file), e.message);
      return true;
    });
  }
});
