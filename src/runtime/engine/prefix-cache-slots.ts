import type { DeviceName } from '../device/device.ts';
import type { SlotKv } from './kv-store.ts';
import { PREFIX_BLOCK_TOKENS, PrefixCache, prefixBlockHashes, type PrefixCacheStats } from './prefix-cache.ts';

/** Bytes in a MiB (the unit of --prefix-cache-mb). */
const MIB = 1024 * 1024;

/**
 * Why a device's sessions cache no prefixes, or undefined where they do: reuse copies KV between
 * a slot and host memory, which only the host-memory cache (CPU, CUDA provider) allows.
 */
export function prefixCacheUnsupported(device: DeviceName): string | undefined {
  if (device === 'webgpu') return 'the WebGPU KV cache lives in GPU memory, which JavaScript cannot copy blocks out of';
  if (device === 'cuda-native') return 'the native CUDA decoder keeps its KV cache inside the addon';
  return undefined;
}

/**
 * Automatic prefix caching for one session's slots: a new sequence starts from the longest cached
 * run of whole blocks of its prompt (copied into its slot, so sequences sharing blocks share no
 * memory), and a prefilled prompt's whole blocks are cached for later ones. At least the last prompt
 * token is always left to prefill: its logits give the first generated token.
 */
export class SlotPrefixCache {
  readonly cache: PrefixCache;

  constructor(
    private readonly kv: SlotKv,
    capacityBytes: number,
    readonly blockSize = PREFIX_BLOCK_TOKENS,
  ) {
    this.cache = new PrefixCache(capacityBytes);
  }

  /** A cache over `kv` within `megabytes` MiB; undefined when the budget is 0 or the session's KV cannot be copied. */
  static over(kv: SlotKv | undefined, megabytes: number | undefined): SlotPrefixCache | undefined {
    if (!kv || !megabytes || megabytes <= 0) return undefined;
    return new SlotPrefixCache(kv, megabytes * MIB);
  }

  /** Fill an empty slot with the cached start of `prompt`; the number of tokens restored (< prompt.length). */
  restore(slot: number, prompt: readonly number[]): number {
    const hashes = prefixBlockHashes(prompt, Math.floor((prompt.length - 1) / this.blockSize), this.blockSize);
    const found = this.cache.match(hashes, prompt.length, this.blockSize);
    if (found.length === 0) return 0;
    this.kv.restorePositions(slot, found.map((b) => b.data), this.blockSize);
    return found.length * this.blockSize;
  }

  /**
   * Cache the whole blocks of a prompt the slot now holds (those not cached yet), as many from its
   * start as the budget holds: a chain cut short keeps its start, which is what later prompts match.
   */
  remember(slot: number, prompt: readonly number[]): void {
    const hashes = prefixBlockHashes(prompt, Math.floor(prompt.length / this.blockSize), this.blockSize);
    // The start already cached must outlive the blocks added behind it.
    this.cache.touch(hashes);
    let limit = hashes.length;
    for (let k = 0; k < limit; k++) {
      if (this.cache.has(hashes[k]!)) continue;
      const data = this.kv.readPositions(slot, k * this.blockSize, this.blockSize);
      limit = Math.min(limit, Math.floor(this.cache.capacityBytes / data.byteLength));
      if (k >= limit || !this.cache.put(hashes[k]!, data)) break;
    }
    this.cache.touch(hashes.slice(0, limit));
  }

  stats(): PrefixCacheStats {
    return this.cache.stats();
  }
}
