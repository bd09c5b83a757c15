import type { KvCache } from '../../src/runtime/engine/kv-cache.ts';
import type { ModelSession } from '../../src/runtime/engine/ort-decoder-session.ts';

/** A copy of the cached positions [0, length) of one slot of a host-memory cache: every layer, keys then values, one array per head. */
export function slotCache(session: ModelSession, slot: number): Float32Array[] {
  const cache = session.cache as KvCache;
  const length = session.length(slot);
  const { feeds } = cache.views(slot, 1, length);
  const out: Float32Array[] = [];
  for (const l of cache.layout) {
    for (const name of [l.pastKey, l.pastValue]) {
      const data = feeds[name]!.data as Float32Array;
      const D = l.cacheHeadDim;
      for (let h = 0; h < l.kvHeads; h++) out.push(data.slice(h * cache.capacity * D, (h * cache.capacity + length) * D));
    }
  }
  return out;
}
