import { randomFillSync } from 'node:crypto';

/**
 * A small seedable PRNG: xoshiro128** (Blackman & Vigna) with its 128-bit state filled by
 * splitmix32. Sampling needs reproducibility for a given `seed` (OpenAI's `seed` parameter), not
 * cryptographic strength, and this is fast in pure 32-bit integer arithmetic (no BigInt).
 */
export interface Rng {
  /** A uniform float in [0, 1), with 32 bits of resolution. */
  nextFloat(): number;
  /** A uniform unsigned 32-bit integer. */
  nextUint32(): number;
}

const TWO_POW_32 = 4294967296;

/** Seeded ⇒ the same sequence every time; unseeded ⇒ seeded from the OS's crypto random. */
export function createRng(seed?: number): Rng {
  return seed === undefined ? Xoshiro128ss.fromWords(randomFillSync(new Uint32Array(4))) : new Xoshiro128ss(seed);
}

const MASK_64 = (1n << 64n) - 1n;

/**
 * The seed of stream `stream` of a seeded generator family: splitmix64's output number `stream`
 * from state `seed` (as 64-bit two's complement), cut to 53 bits. A safe integer for every safe
 * integer seed and every stream, so derived streams never overflow the seed range; unlike
 * seed + stream, stream 1 of seed s is unrelated to stream 0 of seed s + 1.
 */
export function deriveSeed(seed: number, stream: number): number {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
  if (!(Number.isSafeInteger(stream) && stream >= 0)) throw new RangeError(`stream must be a non-negative safe integer, got ${stream}`);
  let z = (BigInt.asUintN(64, BigInt(seed)) + BigInt(stream + 1) * 0x9e3779b97f4a7c15n) & MASK_64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
  z ^= z >> 31n;
  return Number(z >> 11n);
}

export class Xoshiro128ss implements Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /**
   * Any finite number is accepted as a seed; integers up to 2^53 use all their bits (the low and
   * high 32-bit halves both reach the state), so seeds differing only above bit 32 still differ.
   */
  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`rng seed must be a finite number, got ${seed}`);
    const int = Math.trunc(seed);
    const lo = int >>> 0;
    const hi = Math.floor(int / TWO_POW_32) >>> 0;
    // splitmix32 turns a low-entropy seed (0, 1, 2, ...) into well-mixed, nonzero state words.
    let state = (lo ^ mix32((hi + 0x632be5ab) | 0)) | 0;
    const words = new Uint32Array(4);
    for (let i = 0; i < 4; i++) {
      state = (state + 0x9e3779b9) | 0;
      words[i] = mix32(state);
    }
    this.setState(words);
  }

  /** Builds a generator directly from four 32-bit state words (e.g. crypto random). */
  static fromWords(words: Uint32Array): Xoshiro128ss {
    const rng = new Xoshiro128ss(0);
    rng.setState(words);
    return rng;
  }

  nextUint32(): number {
    const s0 = this.s0;
    const s1 = this.s1;
    const s2 = this.s2;
    const s3 = this.s3;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
    const t = s1 << 9;
    const n2 = s2 ^ s0;
    const n3 = s3 ^ s1;
    this.s1 = s1 ^ n2;
    this.s0 = s0 ^ n3;
    this.s2 = n2 ^ t;
    this.s3 = rotl(n3, 11);
    return result >>> 0;
  }

  nextFloat(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  private setState(words: Uint32Array): void {
    this.s0 = (words[0] ?? 0) | 0;
    this.s1 = (words[1] ?? 0) | 0;
    this.s2 = (words[2] ?? 0) | 0;
    this.s3 = (words[3] ?? 0) | 0;
    // The all-zero state is xoshiro's only fixed point; it would emit zeros forever.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** splitmix32's output finaliser (the murmur3 fmix32 constants). */
function mix32(z: number): number {
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}
