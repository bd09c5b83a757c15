import { createHash } from 'node:crypto';

/** Prompt positions per cached block: prefixes are shared in whole blocks. */
export const PREFIX_BLOCK_TOKENS = 16;

/** One block's cached KV (every layer's keys and values for its positions), as the KV store lays it out. */
export type PrefixBlockData = Float32Array | Uint16Array;

/** A cached block: immutable once stored, so a holder may keep reading it after it is evicted. */
export interface PrefixBlock {
  readonly hash: string;
  readonly data: PrefixBlockData;
}

/** What a prefix cache has answered since it was made, and what it holds now. */
export interface PrefixCacheStats {
  /** Prompt tokens looked up, and those found cached (vLLM counts both in tokens too). */
  queryTokens: number;
  hitTokens: number;
  blocks: number;
  bytes: number;
  capacityBytes: number;
}

/**
 * The chained content hash of each whole block of `tokens`: block k's hash covers tokens
 * [0, (k + 1) × blockSize), so equal hashes mean equal prefixes, not only equal blocks (positions
 * matter to the KV: the same tokens later in a prompt have other keys).
 */
export function prefixBlockHashes(tokens: readonly number[], blocks: number, blockSize = PREFIX_BLOCK_TOKENS): string[] {
  if (blocks * blockSize > tokens.length) throw new RangeError(`${blocks} blocks of ${blockSize} exceed the ${tokens.length} tokens`);
  const hashes: string[] = [];
  let parent = '';
  for (let k = 0; k < blocks; k++) {
    const block = Int32Array.from(tokens.slice(k * blockSize, (k + 1) * blockSize));
    parent = createHash('sha256').update(parent).update(new Uint8Array(block.buffer)).digest('base64');
    hashes.push(parent);
  }
  return hashes;
}

/**
 * Cached KV blocks by chained content hash, least recently used evicted first within a byte
 * budget. A chain is always touched deepest block first, so a block is never more recent than
 * its parent: eviction takes the ends of chains and leaves no unreachable orphans behind.
 *
 * Blocks are never written after `put`, and users copy them out synchronously (into a sequence's
 * slot), so sharing one block between concurrent sequences needs no reference counts: an
 * eviction only drops the cache's own reference.
 */
export class PrefixCache {
  /** Insertion order is recency order: the first entry is the least recently used. */
  private readonly blocks = new Map<string, PrefixBlock>();
  private bytes = 0;
  private queryTokens = 0;
  private hitTokens = 0;

  constructor(readonly capacityBytes: number) {
    if (!(Number.isFinite(capacityBytes) && capacityBytes >= 0)) throw new RangeError(`the prefix cache budget must be a non-negative number of bytes, got ${capacityBytes}`);
  }

  has(hash: string): boolean {
    return this.blocks.has(hash);
  }

  /**
   * The cached blocks that start the chain `hashes` (the longest run from its first block), made
   * the most recently used. Counts `queryTokens` looked up and the matched blocks' tokens as hits.
   */
  match(hashes: readonly string[], queryTokens: number, blockSize = PREFIX_BLOCK_TOKENS): PrefixBlock[] {
    const found: PrefixBlock[] = [];
    for (const h of hashes) {
      const block = this.blocks.get(h);
      if (!block) break;
      found.push(block);
    }
    this.touch(found.map((b) => b.hash));
    this.queryTokens += queryTokens;
    this.hitTokens += found.length * blockSize;
    return found;
  }

  /**
   * Store a block (a hash already stored keeps its first data: holders never see it change),
   * evicting the least recently used until it fits. A block larger than the whole budget is not stored.
   */
  put(hash: string, data: PrefixBlockData): boolean {
    if (this.blocks.has(hash)) return true;
    if (data.byteLength > this.capacityBytes) return false;
    this.blocks.set(hash, { hash, data });
    this.bytes += data.byteLength;
    for (const [h, b] of this.blocks) {
      if (this.bytes <= this.capacityBytes) break;
      this.blocks.delete(h);
      this.bytes -= b.data.byteLength;
    }
    return this.blocks.has(hash);
  }

  /** Make a chain's blocks the most recently used, its first block last (the most recent of all). */
  touch(hashes: readonly string[]): void {
    for (let k = hashes.length - 1; k >= 0; k--) {
      const block = this.blocks.get(hashes[k]!);
      if (!block) continue;
      this.blocks.delete(block.hash);
      this.blocks.set(block.hash, block);
    }
  }

  /** Drop every block (the counters stay: they are totals since start). */
  clear(): void {
    this.blocks.clear();
    this.bytes = 0;
  }

  stats(): PrefixCacheStats {
    return { queryTokens: this.queryTokens, hitTokens: this.hitTokens, blocks: this.blocks.size, bytes: this.bytes, capacityBytes: this.capacityBytes };
  }
}
