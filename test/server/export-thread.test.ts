import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { readGguf } from '../../src/runtime/model/gguf-model.ts';
import { ExportFailedError, exportInWorker, type ExportTask } from '../../src/server/export-thread.ts';
import { loadStories, tempDir } from '../runtime/model-helpers.ts';

async function task(name: string): Promise<ExportTask> {
  const m = await loadStories();
  return { model: { spec: m.spec, weights: m.weights, tokenizer: m.tokenizer }, out: join(await tempDir('export-thread'), `${name}.gguf`), format: 'gguf', dtype: 'q8_0', name };
}

test('an export in a worker thread writes the file and resolves', async () => {
  const t = await task('ok');
  await exportInWorker(t, 60_000, new AbortController().signal);
  assert.equal((await readGguf(t.out)).spec.layers.length, 5);
});

test('an export that overruns its bound, or whose client left, ends at once with the reason and leaves no file', async () => {
  const slow = await task('slow');
  await assert.rejects(exportInWorker(slow, 1, new AbortController().signal), (e: Error) => e instanceof ExportFailedError && e.reason === 'timeout' && /within 0 s/.test(e.message));
  const gone = await task('gone');
  const client = new AbortController();
  const pending = exportInWorker(gone, 60_000, client.signal);
  client.abort();
  await assert.rejects(pending, (e: Error) => e instanceof ExportFailedError && e.reason === 'aborted');
  await new Promise((r) => setTimeout(r, 200));
  for (const t of [slow, gone]) await assert.rejects(fs.stat(t.out), 'the worker was stopped before it renamed a file into place');
});

test('a model that cannot be written as asked fails with the thread\'s error name, for a 400', async () => {
  const t = await task('bias');
  t.model = { ...t.model, spec: { ...t.model.spec, attentionBias: true } };
  await assert.rejects(exportInWorker(t, 60_000, new AbortController().signal), (e: Error) => e instanceof ExportFailedError && e.reason === 'ModelFormatError');
});
