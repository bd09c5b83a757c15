import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseGguf } from '../../src/runtime/model/gguf-container.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, postJson, startTestServer } from './helpers/server.ts';

const TOKEN = 'export-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };

async function pruned(s: RunningServer, id: string): Promise<void> {
  const res = await postJson(`${s.url}/admin/prune`, { target: 0.4, samples: 8, seq_len: 64, recovery: 'none', depth_unit: 'sublayer', id }, { headers: { 'content-type': 'application/json', ...auth } });
  const text = await res.text();
  assert.equal(res.status, 202, text);
  const { id: job } = JSON.parse(text) as { id: string };
  const end = Date.now() + 120_000;
  for (;;) {
    const j = (await (await fetch(`${s.url}/admin/prune/${job}`, { headers: auth })).json()) as { status: string; error: string | null };
    if (j.status !== 'running') return assert.equal(j.status, 'succeeded', j.error ?? '');
    assert.ok(Date.now() < end, 'prune still running');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const greedy = async (url: string, model?: string) => {
  const res = await postJson(`${url}/v1/completions`, { ...(model && { model }), prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
  assert.equal(res.status, 200);
  return ((await res.json()) as { choices: { text: string }[] }).choices[0]!.text;
};

describe('GET /admin/models/{id}/export', () => {
  let s: RunningServer;
  let fromFile: RunningServer | undefined;
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), 'mop-admin-export-'));
    s = await startTestServer({ adminToken: TOKEN });
    await pruned(s, 'mop-40');
  });
  after(async () => {
    await fromFile?.close();
    await s.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('streams a pruned variant as a GGUF attachment that a server started on it serves with the same greedy text', async () => {
    const res = await fetch(`${s.url}/admin/models/mop-40/export?format=gguf&dtype=f32`, { headers: auth });
    assert.equal(res.status, 200, res.status === 200 ? '' : await res.text());
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    assert.equal(res.headers.get('content-disposition'), 'attachment; filename="mop-40.f32.gguf"');
    const bytes = new Uint8Array(await res.arrayBuffer());
    assert.equal(Number(res.headers.get('content-length')), bytes.length);
    const g = parseGguf(bytes, 'download');
    assert.equal(g.metadata.get('general.architecture')!.value, 'deci');
    const file = join(dir, 'mop-40.gguf');
    await fs.writeFile(file, bytes);
    fromFile = await startTestServer({ model: file });
    assert.equal(await greedy(fromFile.url), await greedy(s.url, 'mop-40'));
  });

  it('exports Q8_0 and leaves no temporary file behind', async () => {
    const before = (await fs.readdir(tmpdir())).filter((f) => f.startsWith('mop-export-')).length;
    const res = await fetch(`${s.url}/admin/models/mop-40/export?dtype=Q8_0`, { headers: auth });
    assert.equal(res.status, 200);
    const g = parseGguf(new Uint8Array(await res.arrayBuffer()), 'download');
    assert.equal(g.metadata.get('general.file_type')!.value, 7);
    assert.equal((await fs.readdir(tmpdir())).filter((f) => f.startsWith('mop-export-')).length, before);
  });

  it('answers bad requests in OpenAI\'s error shape: no token, unknown model, another format, an unknown dtype', async () => {
    await assertOpenAIError(await fetch(`${s.url}/admin/models/mop-40/export`), 401);
    assert.equal((await assertOpenAIError(await fetch(`${s.url}/admin/models/nope/export`, { headers: auth }), 404, 'model')).code, 'model_not_found');
    const hf = await assertOpenAIError(await fetch(`${s.url}/admin/models/mop-40/export?format=hf`, { headers: auth }), 400, 'format');
    assert.match(hf.message, /mop export --format hf/);
    const bf16 = await assertOpenAIError(await fetch(`${s.url}/admin/models/mop-40/export?dtype=bf16`, { headers: auth }), 400, 'dtype');
    assert.match(bf16.message, /unknown export dtype 'bf16'; one of f32, f16, q8_0, q4_0/);
  });
});
