import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { KvCache } from '../../src/runtime/engine/kv-cache.ts';
import { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';
import { openModel, type OpenedModel } from '../../src/runtime/engine/open-model.ts';
import { argmax, maxAbsDiff } from '../helpers/logits.ts';
import { slotCache } from '../helpers/slot-cache.ts';

const tokens = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 1 + ((i * 37 + seed * 11) % 500));

describe('KV cache fed only the new positions (cacheOutputs new)', () => {
  let m: OpenedModel;
  let inPlace: ModelSession;
  let newOnly: ModelSession;
  before(async () => {
    m = await openModel({ maxContext: 320, threads: 1 });
    const options = { maxBatch: 4, maxContext: 320, threads: 1, prefillChunk: 64 };
    inPlace = await ModelSession.create(m.model.spec, m.model.weights, { ...options, cacheOutputs: 'present' });
    newOnly = await ModelSession.create(m.model.spec, m.model.weights, options);
  });
  after(async () => {
    await m.session.release();
    await inPlace.release();
    await newOnly.release();
  });

  it('is what a CPU session uses, and refuses a WebGPU session', async () => {
    assert.equal(newOnly.graph.cacheOutputs, 'new');
    assert.equal(inPlace.graph.cacheOutputs, 'present');
    await assert.rejects(ModelSession.create(m.model.spec, m.model.weights, { maxBatch: 1, maxContext: 32, target: { device: 'webgpu', dtype: 'float32' }, cacheOutputs: 'new' }), /WebGPU keeps the cache on the GPU: use 'present'/);
  });

  it('holds, after chunked prefill past a capacity growth, batched fresh prompts and decode steps with riders, the cache GQA writes in place, and gives the same logits', async () => {
    const run = async (s: ModelSession) => {
      const logits: Float32Array[] = [];
      logits.push(await s.prefill(0, tokens(150, 1))); // three chunks, the cache grows 128 → 256
      logits.push(...(await s.prefillBatch([{ slot: 1, tokens: tokens(20, 2) }, { slot: 2, tokens: tokens(37, 3) }])));
      const next = logits.map(argmax);
      for (let step = 0; step < 12; step++) {
        // Slot 1 rides along on every other step (not in the entries, its row still runs).
        const slots = step % 2 === 0 ? [0, 1, 2] : [0, 2];
        const out = await s.decode(slots.map((slot) => ({ slot, token: next[slot]! })));
        slots.forEach((slot, k) => {
          next[slot] = argmax(out[k]!);
          logits.push(out[k]!);
        });
      }
      return { logits, lengths: [0, 1, 2, 3].map((slot) => s.length(slot)) };
    };
    const a = await run(inPlace);
    const b = await run(newOnly);
    assert.deepEqual(b.lengths, a.lengths);
    assert.deepEqual(b.lengths, [162, 26, 49, 0]);
    assert.equal(b.logits.length, a.logits.length);
    a.logits.forEach((x, i) => assert.ok(maxAbsDiff(x, b.logits[i]!) <= 1e-5, `logits ${i} differ by ${maxAbsDiff(x, b.logits[i]!)}`));
    for (const slot of [0, 1, 2]) {
      const [a, b] = [slotCache(inPlace, slot), slotCache(newOnly, slot)];
      assert.equal(b.length, a.length);
      a.forEach((part, k) => assert.ok(maxAbsDiff(part, b[k]!) <= 1e-5, `slot ${slot}'s cache differs`));
    }
    assert.ok((newOnly.cache as KvCache).capacity >= 256);
  });

  it('refuses a commit with no binding, and outputs from a graph without new positions, by name', async () => {
    const cache = newOnly.cache as KvCache;
    await assert.rejects(cache.commit({}, Int32Array.of(0)), /commit without a binding/);
    await cache.bindSlot(3, 1);
    await assert.rejects(cache.commit({}, Int32Array.of(0)), /returned no new_key_0 \/ new_value_0: was the graph built with cacheOutputs 'new'\?/);
  });
});
