import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sseData, sseDataOf } from '../../scripts/lib/sse-data.ts';

async function* bytes(parts: string[]): AsyncGenerator<Uint8Array> {
  const encoder = new TextEncoder();
  for (const p of parts) yield encoder.encode(p);
}

async function collect(parts: string[]): Promise<string[]> {
  const out: string[] = [];
  for await (const d of sseData(bytes(parts))) out.push(d);
  return out;
}

describe('scripts/lib/sse-data', () => {
  const text = 'data: {"a":1}\n\n: comment\n\ndata: {"b":"é"}\r\n\r\ndata: [DONE]\n\n';
  const want = ['{"a":1}', '{"b":"é"}', '[DONE]'];

  it('yields every event’s data however the body is cut, a multi-byte character included', async () => {
    assert.deepEqual(await collect([text]), want);
    const raw = new TextEncoder().encode(text);
    for (let cut = 1; cut < raw.length; cut++) {
      const parts = [raw.subarray(0, cut), raw.subarray(cut)];
      const out: string[] = [];
      for await (const d of sseData((async function* () { yield* parts; })())) out.push(d);
      assert.deepEqual(out, want, `cut at byte ${cut}`);
    }
  });

  it('keeps an event the body ended without its blank line, as a whole body does', async () => {
    assert.deepEqual(await collect(['data: x\n\ndata: tail']), ['x', 'tail']);
    assert.deepEqual(sseDataOf(text), want);
  });
});
