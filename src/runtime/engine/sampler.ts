import { createRng } from './rng.ts';
import { applyTokenMask } from './token-mask.ts';
import type { Rng } from './rng.ts';
import { isGreedy, validateSamplingParams } from './sampling-params.ts';
import type { SamplingParams } from './sampling-params.ts';

/**
 * The token ids a request has seen so far, kept incrementally so the penalties cost O(distinct
 * tokens) per step rather than a rescan of the whole sequence. The generation loop owns it and
 * calls `push` with each sampled token; the Sampler only reads it.
 */
export class TokenHistory {
  private readonly promptIds: readonly number[];
  private readonly generatedIds: number[] = [];
  /** Generated tokens only: presence/frequency penalties (OpenAI) ignore the prompt. */
  private readonly counts = new Map<number, number>();
  /** Prompt + generated: the repetition penalty (HF/vLLM) covers both. */
  private readonly seenIds = new Set<number>();

  constructor(prompt: Iterable<number> = []) {
    this.promptIds = [...prompt];
    for (const id of this.promptIds) this.seenIds.add(id);
  }

  push(id: number): void {
    this.generatedIds.push(id);
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    this.seenIds.add(id);
  }

  get prompt(): readonly number[] {
    return this.promptIds;
  }

  get generated(): readonly number[] {
    return this.generatedIds;
  }

  /** token id → times generated (never 0). */
  get generatedCounts(): ReadonlyMap<number, number> {
    return this.counts;
  }

  /** Every token id in prompt or output. */
  get seen(): ReadonlySet<number> {
    return this.seenIds;
  }
}

export interface TopLogprob {
  token: number;
  logprob: number;
}

export interface SampleResult {
  token: number;
  /**
   * The chosen token's log-probability under the raw model distribution (see Sampler.sample);
   * present only when `params.logprobs` is set: the softmax normaliser is a pass of Math.exp over
   * the whole vocabulary, the largest cost of a greedy step (scripts/experiments/bench-sampling.ts).
   */
  logprob?: number;
  /** The `params.logprobs` most likely tokens, most likely first; absent when logprobs is undefined. */
  top?: TopLogprob[];
}

export type PenaltyParams = Pick<SamplingParams, 'presencePenalty' | 'frequencyPenalty' | 'repetitionPenalty'>;

/**
 * Applies the penalties to `logits` in place and returns it, in vLLM's order: repetition
 * (prompt + generated; positive logits divided, negative multiplied, so both move toward "less
 * likely"), then frequency × count and presence (generated only). Ids outside the vocabulary are
 * ignored.
 */
export function applyPenalties(logits: Float32Array, history: TokenHistory, params: PenaltyParams): Float32Array {
  const vocab = logits.length;
  const rep = params.repetitionPenalty;
  if (rep !== 1) {
    for (const id of history.seen) {
      if (id < 0 || id >= vocab) continue;
      const x = logits[id]!;
      logits[id] = x > 0 ? x / rep : x * rep;
    }
  }
  const freq = params.frequencyPenalty;
  const pres = params.presencePenalty;
  if (freq !== 0 || pres !== 0) {
    for (const [id, count] of history.generatedCounts) {
      if (id < 0 || id >= vocab) continue;
      logits[id] = logits[id]! - (freq * count + pres);
    }
  }
  return logits;
}

/** a ranks before b: the higher logit, ties to the lower id (so every ordering is deterministic). */
function ranksBefore(values: Float32Array, a: number, b: number): boolean {
  const va = values[a]!;
  const vb = values[b]!;
  return va > vb || (va === vb && a < b);
}

/** Restores the heap below `i`, where each parent ranks *after* its children (worst at the root). */
function siftDown(values: Float32Array, heap: Int32Array, i: number, size: number): void {
  for (;;) {
    const left = 2 * i + 1;
    if (left >= size) return;
    const right = left + 1;
    let worst = left;
    if (right < size && ranksBefore(values, heap[left]!, heap[right]!)) worst = right;
    if (!ranksBefore(values, heap[i]!, heap[worst]!)) return;
    const tmp = heap[i]!;
    heap[i] = heap[worst]!;
    heap[worst] = tmp;
    i = worst;
  }
}

/**
 * Writes the ids of the `k` highest values into out[0..k), best first (ties to the lower id), and
 * returns how many were written (min(k, values.length)). A bounded heap: O(V) when most values
 * lose to the heap's worst (the usual case for logits), O(V log k) at worst — no full-vocab sort.
 */
export function selectTop(values: Float32Array, k: number, out: Int32Array): number {
  const n = values.length;
  k = Math.min(k, n);
  if (k <= 0) return 0;
  for (let i = 0; i < k; i++) out[i] = i;
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(values, out, i, k);
  let rootValue = values[out[0]!]!;
  for (let i = k; i < n; i++) {
    // Every id already in the heap is < i, so a tie never lets i in: strictly greater only.
    if (values[i]! > rootValue) {
      out[0] = i;
      siftDown(values, out, 0, k);
      rootValue = values[out[0]!]!;
    }
  }
  // Heapsort: repeatedly move the worst to the end, leaving out[0..k) best first.
  for (let end = k - 1; end > 0; end--) {
    const tmp = out[0]!;
    out[0] = out[end]!;
    out[end] = tmp;
    siftDown(values, out, 0, end);
  }
  return k;
}

/** Float32's largest finite value: +Infinity logits are clamped to it so `x - max` stays finite. */
const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Turns one step's logits into a token for one request. Construct one per request (it owns the
 * request's RNG, so a seed reproduces the whole sequence) and reuse it for every step. The
 * parameters are checked here; the vocabulary-sized scratch buffers are allocated at the first
 * step that needs them (a queued request holds none) and kept for the next steps until `release`.
 */
export class Sampler {
  readonly params: SamplingParams;
  readonly vocabSize: number;
  private readonly rng: Rng;
  /** Sanitised raw logits, then penalised logits. */
  private work: Float32Array | undefined;
  /** Unnormalised probabilities exp((logit - max) / T), indexed by token id (drawing only). */
  private weights: Float32Array | undefined;
  /** Candidate token ids, when truncation has selected a subset (drawing only). */
  private order: Int32Array | undefined;
  private topIds: Int32Array | undefined;
  /** Σ exp(raw - rawMax) when the current step's draw already computed it, else NaN. */
  private reusableExpSum = NaN;

  /** `rng` overrides the one built from `params.seed` (for tests and custom streams). */
  constructor(params: SamplingParams, vocabSize: number, rng?: Rng) {
    if (!(Number.isInteger(vocabSize) && vocabSize > 0)) throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
    this.params = validateSamplingParams({ ...params });
    this.vocabSize = vocabSize;
    this.rng = rng ?? createRng(params.seed);
  }

  /** Bytes of scratch buffers held now: 0 before the first step and after `release`. */
  get bufferBytes(): number {
    return (this.work?.byteLength ?? 0) + (this.weights?.byteLength ?? 0) + (this.order?.byteLength ?? 0) + (this.topIds?.byteLength ?? 0);
  }

  /** Drop the scratch buffers (the request is done); a later step would allocate them again. */
  release(): void {
    this.work = this.weights = this.order = this.topIds = undefined;
  }

  /**
   * Steps: reported logprobs come from the log-softmax of the *raw* logits (what vLLM returns by
   * default: the model's own distribution, unaffected by this request's penalties, temperature
   * or truncation); then penalties → temperature → top-k → top-p → min-p → draw. Temperature 0
   * (or top-k 1) takes the argmax of the penalised logits, ties to the lowest id, using no
   * randomness. NaN logits count as -inf and +inf as the largest float, so no NaN can come out;
   * if penalties leave nothing finite the raw argmax is returned.
   *
   * With `allowed` (a TokenConstraint's mask) every other token is removed before the penalties,
   * so only allowed tokens can be drawn; reported logprobs stay those of the raw distribution, as
   * vLLM reports them. If nothing allowed is finite, the lowest allowed id is returned.
   */
  sample(logits: Float32Array, history: TokenHistory, allowed?: Int32Array): SampleResult {
    const vocab = this.vocabSize;
    if (logits.length !== vocab) throw new RangeError(`expected ${vocab} logits, got ${logits.length}`);
    const params = this.params;
    const work = (this.work ??= new Float32Array(vocab));

    let rawMax = -Infinity;
    let rawArgmax = 0;
    for (let i = 0; i < vocab; i++) {
      const x = sanitize(logits[i]!);
      work[i] = x;
      if (x > rawMax) {
        rawMax = x;
        rawArgmax = i;
      }
    }

    // Select the top alternatives now, while `work` still holds the raw logits.
    const topIds = params.logprobs === undefined ? undefined : (this.topIds ??= new Int32Array(Math.min(vocab, params.logprobs)));
    const topCount = topIds === undefined ? 0 : selectTop(work, params.logprobs!, topIds);

    let max = rawMax;
    let argmax = rawArgmax;
    // What to return when nothing drawable is finite: the raw argmax, or the first allowed token.
    const fallback = allowed === undefined ? rawArgmax : Math.max(0, applyTokenMask(work, allowed));
    const adjusted = allowed !== undefined || penaltiesApply(history, params);
    if (adjusted) {
      if (penaltiesApply(history, params)) applyPenalties(work, history, params);
      max = -Infinity;
      argmax = -1;
      for (let i = 0; i < vocab; i++) {
        if (work[i]! > max) {
          max = work[i]!;
          argmax = i;
        }
      }
    }

    let token: number;
    this.reusableExpSum = NaN;
    if (max === -Infinity) token = fallback;
    else if (isGreedy(params)) token = argmax;
    else token = this.draw(work, max, argmax, !adjusted);

    if (params.logprobs === undefined) return { token };
    // Math.exp dominates a step's cost, so reuse the sampling pass's sum when it was over exactly
    // exp(raw - rawMax) (T = 1, no penalties, no top-k), and only otherwise pay a second pass.
    let expSum = this.reusableExpSum;
    if (Number.isNaN(expSum)) expSum = rawMax === -Infinity ? 0 : rawExpSum(logits, rawMax);
    const logSumExp = rawMax + Math.log(expSum);
    // All -inf has no softmax; calling it uniform keeps the numbers finite instead of NaN.
    const logprobOf = (x: number): number => (rawMax === -Infinity ? -Math.log(vocab) : x - logSumExp);

    const top: TopLogprob[] = [];
    for (let j = 0; j < topCount; j++) {
      const id = topIds![j]!;
      top.push({ token: id, logprob: logprobOf(sanitize(logits[id]!)) });
    }
    return { token, logprob: logprobOf(sanitize(logits[token]!)), top };
  }

  /**
   * Draws a token from the penalised logits `work` (max and argmax given). `raw` says they
   * are the unpenalised logits, so the full-vocabulary weight sum can double as the softmax
   * normaliser of the raw distribution at temperature 1.
   */
  private draw(work: Float32Array, max: number, argmax: number, raw: boolean): number {
    const { vocabSize: vocab, params } = this;
    const weights = (this.weights ??= new Float32Array(vocab));
    const order = (this.order ??= new Int32Array(vocab));
    const invT = 1 / params.temperature;
    const topK = params.topK > 0 && params.topK < vocab ? params.topK : 0;
    // Either order[0..n) lists the candidates (`useOrder`), or, while nothing truncates, every
    // token is a candidate and `order` is unused.
    let useOrder = false;
    let n = vocab;
    // Sum of the candidates' weights (top-k's, or the whole vocabulary's), before top-p.
    let total = 0;
    if (topK > 0) {
      n = selectTop(work, topK, order);
      useOrder = true;
      for (let j = 0; j < n; j++) {
        const id = order[j]!;
        weights[id] = Math.exp((work[id]! - max) * invT);
        total += weights[id]!;
      }
    } else {
      for (let i = 0; i < vocab; i++) {
        weights[i] = Math.exp((work[i]! - max) * invT);
        total += weights[i]!;
      }
      if (raw && params.temperature === 1) this.reusableExpSum = total;
    }

    if (params.topP < 1) {
      if (!useOrder) {
        for (let i = 0; i < vocab; i++) order[i] = i;
        useOrder = true;
      }
      n = partitionNucleus(weights, order, n, params.topP * total);
    }

    // min-p: the most likely token has weight exp(0) = 1, so "p < minP × pmax" is "weight < minP".
    // Top-p always keeps that token, so at least one candidate survives.
    const minP = params.minP;
    if (minP > 0) {
      let kept = 0;
      if (useOrder) {
        for (let j = 0; j < n; j++) {
          const id = order[j]!;
          if (weights[id]! >= minP) order[kept++] = id;
        }
      } else {
        for (let i = 0; i < vocab; i++) if (weights[i]! >= minP) order[kept++] = i;
        useOrder = true;
      }
      n = kept;
    }

    return useOrder ? drawFrom(this.rng, weights, order, n) : drawAll(this.rng, weights, total, argmax);
  }
}

function sanitize(x: number): number {
  if (x !== x) return -Infinity;
  return x === Infinity ? FLOAT32_MAX : x;
}

/** Σ exp(sanitize(logit) - max), reading the caller's logits (the scratch copy is penalised by now). */
function rawExpSum(logits: Float32Array, max: number): number {
  let s = 0;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i]!;
    // NaN counts as -inf (adds 0); +inf was clamped to the max, so it adds exp(0).
    if (x === Infinity) s += 1;
    else if (x === x) s += Math.exp(x - max);
  }
  return s;
}

/** Whether any penalty would change a logit this step (lets the common case skip a pass). */
function penaltiesApply(history: TokenHistory, params: PenaltyParams): boolean {
  return (
    (params.repetitionPenalty !== 1 && history.seen.size > 0) ||
    ((params.presencePenalty !== 0 || params.frequencyPenalty !== 0) && history.generatedCounts.size > 0)
  );
}

/**
 * Rearranges order[0..n) so that order[0..result) is the top-p nucleus: the smallest set of the
 * heaviest candidates whose weight reaches `target` (ties at the boundary go to the lower id).
 * A mass-guided quickselect: expected O(n), where sorting the vocabulary would be O(n log n) —
 * and flat distributions (high temperature) can have nuclei of thousands of tokens. The nucleus
 * comes out unordered, which drawing does not need. Deterministic: pivots are median-of-three.
 */
export function partitionNucleus(weights: Float32Array, order: Int32Array, n: number, target: number): number {
  let lo = 0;
  let hi = n;
  let need = target;
  // Invariant: order[0..lo) is in the nucleus, order[hi..n) is out, `need` is the mass still missing.
  while (lo < hi) {
    const pivot = median3(weights[order[lo]!]!, weights[order[(lo + hi) >> 1]!]!, weights[order[hi - 1]!]!);
    // Three-way partition: [lo, lt) heavier than pivot, [lt, gt) equal, [gt, hi) lighter.
    let lt = lo;
    let gt = hi;
    let heavier = 0;
    let equal = 0;
    for (let i = lo; i < gt; ) {
      const id = order[i]!;
      const w = weights[id]!;
      if (w > pivot) {
        order[i] = order[lt]!;
        order[lt++] = id;
        i++;
        heavier += w;
      } else if (w < pivot) {
        order[i] = order[--gt]!;
        order[gt] = id;
      } else {
        i++;
        equal += w;
      }
    }
    if (heavier >= need) {
      hi = lt;
      continue;
    }
    need -= heavier;
    if (equal >= need) {
      // Part of a tie group is enough: take its lowest ids first, as ranksBefore would.
      order.subarray(lt, gt).sort();
      let acc = 0;
      for (let j = lt; j < gt; j++) {
        acc += weights[order[j]!]!;
        if (acc >= need) return j + 1;
      }
      return gt;
    }
    need -= equal;
    lo = gt;
  }
  // Either the target was met exactly at a boundary, or rounding left it a hair short with
  // every candidate taken.
  return lo;
}

function median3(a: number, b: number, c: number): number {
  return a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
}

/** Draws from order[0..n) in proportion to weight (renormalising over just those candidates). */
function drawFrom(rng: Rng, weights: Float32Array, order: Int32Array, n: number): number {
  let total = 0;
  for (let j = 0; j < n; j++) total += weights[order[j]!]!;
  const u = rng.nextFloat() * total;
  // Summing in the same order as `total` makes the final acc equal total, and u < total.
  let acc = 0;
  for (let j = 0; j < n; j++) {
    acc += weights[order[j]!]!;
    if (u < acc) return order[j]!;
  }
  return order[0]!;
}

/** Draws from the whole vocabulary in proportion to weight; `total` was summed in index order. */
function drawAll(rng: Rng, weights: Float32Array, total: number, fallback: number): number {
  const u = rng.nextFloat() * total;
  let acc = 0;
  for (let i = 0; i < weights.length; i++) {
    acc += weights[i]!;
    if (u < acc) return i;
  }
  return fallback;
}
