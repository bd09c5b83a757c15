import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeGguf } from '../../src/runtime/model/gguf-writer.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { loadStories, tempDir } from '../runtime/model-helpers.ts';
import { postJson, scrape, startTestServer } from './helpers/server.ts';

describe('a server started with --dtype int8', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ dtype: 'int8', adminToken: 'quantized-admin-token' })));
  after(async () => s.close());

  it('serves completions and says int8 where dashboards and operators look', async () => {
    const res = await postJson(s.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    assert.equal(res.status, 200);
    const metrics = await scrape(s.url);
    assert.equal(metrics.get('mop_model_info{device="cpu",dtype="int8",model="stories260K"}'), 1);
    const models = (await (await fetch(s.url + '/admin/models', { headers: { authorization: 'Bearer quantized-admin-token' } })).json()) as { data: { dtype: string }[] };
    assert.equal(models.data[0]!.dtype, 'int8');
  });
});

describe('a server started on a GGUF Q8_0 checkpoint with --dtype int8', () => {
  let s: RunningServer;
  const lines: string[] = [];
  before(async () => {
    const m = await loadStories();
    const path = join(await tempDir('serve-q8_0'), 'stories.q8_0.gguf');
    await writeGguf(m, path, { dtype: 'q8_0', tokenizer: m.tokenizer as never });
    s = await startTestServer({ model: path, dtype: 'int8' }, { log: (l) => lines.push(l) });
  });
  after(async () => s?.close());

  it("runs the file's own Q8_0 blocks where they fit the graph and says how many in its start-up log", async () => {
    // stories260K: gate, up and down (its 172-wide rows zero-padded to 192 in the file) and the tied head
    // come from the file; Q/K/V and O are widened from head size 8 to the kernels' 16, so they are quantized here.
    const line = lines.find((l) => l.startsWith('int8 weights:'));
    assert.match(line ?? lines.join('\n'), /^int8 weights: 16 matrices run the checkpoint's own blocks, 10 quantized at load/);
    const res = await postJson(s.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { choices: { text: string }[] };
    assert.ok(body.choices[0]!.text.length > 0);
  });
});
