import type { DeviceName } from '../runtime/device/device.ts';
import { openMaskedForward } from '../runtime/calibration/ort-masked-forward.ts';
import { type TokenBatch, toBatches } from '../runtime/calibration/token-batch.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { checkSamplingShape, tokenizeText } from './calibration.ts';
import { MopInputError } from './errors.ts';
import { fullPlan } from './pruning-plan.ts';
import type { ModelWeights } from './surgery.ts';

/**
 * Quality of a (pruned) model: perplexity on held-out text and KL divergence of its next-token
 * distributions to the dense model's. Text is cut into non-overlapping windows of BOS + T−1 tokens
 * (the last one shorter), so every token of the text is predicted exactly once, from the context
 * of its own window.
 */
export interface TextWindows {
  sequences: Int32Array[];
  /** Tokens predicted (every token of the text). */
  tokens: number;
}

export function textWindows(tokenizer: Tokenizer, text: string, seqLen: number): TextWindows {
  checkSamplingShape(1, seqLen);
  const bos = tokenizer.bosTokenId;
  if (bos === undefined) throw new MopInputError('the tokenizer has no BOS token; evaluation windows start with one');
  const stream = tokenizeText(tokenizer, text);
  if (stream.length === 0) throw new MopInputError('evaluation text has no tokens');
  const piece = seqLen - 1;
  const sequences: Int32Array[] = [];
  for (let off = 0; off < stream.length; off += piece) {
    const part = stream.slice(off, off + piece);
    sequences.push(Int32Array.from([bos, ...part]));
  }
  return { sequences, tokens: stream.length };
}

/** Σ −log p(next token) over every position of a batch whose next token is in the batch. */
export function batchNll(logits: Float32Array, batch: TokenBatch, vocab: number): { sum: number; count: number } {
  let sum = 0;
  let count = 0;
  for (let r = 0; r < batch.rows; r++) {
    for (let t = 0; t + 1 < batch.seqLen; t++) {
      const row = logits.subarray(((r * batch.seqLen) + t) * vocab, ((r * batch.seqLen) + t + 1) * vocab);
      sum += logSumExp(row) - row[batch.ids[r * batch.seqLen + t + 1]!]!;
      count++;
    }
  }
  return { sum, count };
}

/** Σ over positions of KL(p ‖ q) for logits p (reference) and q (candidate) of equal shape. */
export function batchKl(reference: Float32Array, candidate: Float32Array, positions: number, vocab: number): number {
  let sum = 0;
  for (let t = 0; t < positions; t++) {
    const p = reference.subarray(t * vocab, (t + 1) * vocab);
    const q = candidate.subarray(t * vocab, (t + 1) * vocab);
    const lp = logSumExp(p);
    const lq = logSumExp(q);
    let kl = 0;
    for (let v = 0; v < vocab; v++) {
      const logP = p[v]! - lp;
      kl += Math.exp(logP) * (logP - (q[v]! - lq));
    }
    sum += kl;
  }
  return sum;
}

/** Σ over positions of cos(a_t, b_t) for [positions, width] vectors. */
export function batchCosine(a: Float32Array, b: Float32Array, positions: number, width: number): number {
  let sum = 0;
  for (let t = 0; t < positions; t++) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let k = t * width; k < (t + 1) * width; k++) {
      dot += a[k]! * b[k]!;
      na += a[k]! * a[k]!;
      nb += b[k]! * b[k]!;
    }
    sum += dot / Math.max(Math.sqrt(na * nb), 1e-30);
  }
  return sum;
}

function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (const x of row) if (x > max) max = x;
  let s = 0;
  for (const x of row) s += Math.exp(x - max);
  return max + Math.log(s);
}

export interface PerplexityResult {
  perplexity: number;
  /** Mean negative log-likelihood per token, in nats. */
  meanNll: number;
  tokens: number;
}

export interface EvalOptions {
  threads?: number;
  /** Device of the forward passes (float32); default cpu. */
  device?: DeviceName;
}

function forwardOptions(maxSeqLen: number, options: EvalOptions) {
  return { maxSeqLen, ...(options.threads !== undefined && { threads: options.threads }), ...(options.device && { device: options.device }) };
}

function maxLen(sequences: readonly Int32Array[], model: ModelWeights): number {
  const n = sequences.reduce((m, s) => Math.max(m, s.length), 2);
  if (n > model.spec.maxContext) throw new MopInputError(`windows of ${n} tokens exceed the model's context of ${model.spec.maxContext}`);
  return n;
}

/** Perplexity of a model on windows of text. */
export async function perplexity(model: ModelWeights, windows: TextWindows, options: EvalOptions = {}): Promise<PerplexityResult> {
  const forward = await openMaskedForward(model.spec, model.weights, forwardOptions(maxLen(windows.sequences, model), options));
  try {
    const plan = fullPlan(model.spec);
    let sum = 0;
    let count = 0;
    for (const batch of toBatches(windows.sequences)) {
      const { logits } = await forward.run(batch, plan, { logits: true });
      const r = batchNll(logits!, batch, model.spec.vocabSize);
      sum += r.sum;
      count += r.count;
    }
    return { perplexity: Math.exp(sum / count), meanNll: sum / count, tokens: count };
  } finally {
    await forward.release();
  }
}

/** Mean KL(dense ‖ pruned) of next-token distributions over every position of the windows, in nats. */
export async function klDivergence(dense: ModelWeights, pruned: ModelWeights, windows: TextWindows, options: EvalOptions = {}): Promise<{ meanKl: number; positions: number }> {
  if (dense.spec.vocabSize !== pruned.spec.vocabSize) throw new MopInputError(`vocabularies differ: ${dense.spec.vocabSize} vs ${pruned.spec.vocabSize}`);
  const seq = Math.max(maxLen(windows.sequences, dense), maxLen(windows.sequences, pruned));
  const opts = forwardOptions(seq, options);
  const a = await openMaskedForward(dense.spec, dense.weights, opts);
  const b = await openMaskedForward(pruned.spec, pruned.weights, opts);
  try {
    const planA = fullPlan(dense.spec);
    const planB = fullPlan(pruned.spec);
    let sum = 0;
    let positions = 0;
    for (const batch of toBatches(windows.sequences)) {
      const p = (await a.run(batch, planA, { logits: true })).logits!;
      const q = (await b.run(batch, planB, { logits: true })).logits!;
      sum += batchKl(p, q, batch.rows * batch.seqLen, dense.spec.vocabSize);
      positions += batch.rows * batch.seqLen;
    }
    return { meanKl: sum / positions, positions };
  } finally {
    await a.release();
    await b.release();
  }
}
