import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runMop } from '../helpers/run-cli.ts';

describe('mop generate', () => {
  it('streams the greedy continuation (not the prompt) of the bundled model to stdout', async () => {
    const r = await runMop(['generate', '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '16', '--threads', '1']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, ', there was a little girl named Lily. She loved to play\n');
    assert.match(r.stderr, /loaded .*stories260K\.bin \[llama2c\]: 5 layers/);
    assert.match(r.stderr, /16 tokens after a 5-token prompt .* finish: length/);
  });

  it('takes its settings from MOP_* environment variables too', async () => {
    const r = await runMop(['generate', '-q'], { MOP_PROMPT: 'Once upon a time', MOP_TEMPERATURE: '0', MOP_MAX_TOKENS: '6', MOP_THREADS: '1' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, ', there was a little g\n', 'six greedy tokens: the last one is the first half of "girl"');
    assert.equal(r.stderr, '');
  });

  it('repeats itself exactly for the same seed', async () => {
    const args = ['generate', '-q', '--prompt', 'The dog', '--seed', '3', '--temperature', '1', '--max-tokens', '20', '--threads', '1'];
    const [a, b] = await Promise.all([runMop(args), runMop(args)]);
    assert.equal(a.code, 0);
    assert.equal(a.stdout, b.stdout);
  });

  it('says in one line, without a stack trace, that a model path does not exist', async () => {
    const r = await runMop(['generate', '--model', '/nonexistent/model.bin']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mop: error: .*\/nonexistent\/model\.bin/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  });

  it('reports a truncated checkpoint as such', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-cli-'));
    const src = path.resolve('models/stories260K');
    await fs.writeFile(path.join(dir, 'model.bin'), (await fs.readFile(path.join(src, 'stories260K.bin'))).subarray(0, 50_000));
    await fs.copyFile(path.join(src, 'tok512.bin'), path.join(dir, 'tok512.bin'));
    const r = await runMop(['generate', '--model', path.join(dir, 'model.bin')]);
    await fs.rm(dir, { recursive: true, force: true });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mop: error: .*truncated/);
  });

  it('rejects out-of-range sampling settings and unknown devices with the field named', async () => {
    const t = await runMop(['generate', '--temperature', '-1']);
    assert.equal(t.code, 1);
    assert.match(t.stderr, /temperature/);
    const d = await runMop(['generate', '--device', 'tpu']);
    assert.equal(d.code, 1);
    assert.match(d.stderr, /unknown device 'tpu'/);
    const n = await runMop(['generate', '--max-tokens', 'many']);
    assert.notEqual(n.code, 0);
    assert.match(n.stderr, /max-tokens/);
  });

  it('refuses a GPU that is not usable here with one line saying what to install, and runs float16 on the CPU when asked', async () => {
    const c = await runMop(['generate', '--device', 'cuda', '--prompt', 'x']);
    assert.equal(c.code, 1);
    assert.match(c.stderr, /^mop: error: --device cuda is not usable here: onnxruntime-node was installed without its CUDA provider: reinstall .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
    assert.equal(c.stderr.trim().split('\n').length, 1);
    const h = await runMop(['generate', '--dtype', 'fp16', '--device', 'cpu', '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '8', '--threads', '1']);
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stderr, /on cpu \(float16\) \(cpu requested\)/);
    assert.match(h.stdout, /^, there was a little girl/);
  });

  it('refuses a prompt longer than the context', async () => {
    const r = await runMop(['generate', '--context', '16', '--prompt', 'Once upon a time there was a very long prompt that does not fit in sixteen tokens at all']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mop: error: the prompt has \d+ tokens; the context holds 16/m);
  });
});

describe('mop info', () => {
  it('prints layers, heads, KV heads, ffn and parameter counts', async () => {
    const r = await runMop(['info']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /layers:\s+5/);
    assert.match(r.stdout, /parameters:\s+[\d,]+ total/);
    assert.match(r.stdout, /^\s+0\s+8\s+4\s+8\s+172$/m);
  });

  it('prints the ModelSpec as JSON with --json', async () => {
    const r = await runMop(['info', '--json', '--model', 'models/stories260K/stories260K.gguf']);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    assert.equal(info.format, 'gguf');
    assert.equal(info.spec.layers.length, 5);
    assert.equal(info.spec.layers[0].kvHeads, 4);
  });
});
