import { createDecoderSession } from '../runtime/engine/create-session.ts';
import { Xoshiro128ss } from '../runtime/engine/rng.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { MopInputError } from './errors.ts';
import { checkOneBatch, type RecoveryText, streamWindows } from './recovery-data.ts';
import type { ModelWeights } from './surgery.ts';

/**
 * Recovery text sampled from the dense model itself (`--recovery-data self`): a model then recovers
 * on its own distribution without any dataset. Samples are drawn at temperature 1 with a seeded
 * generator, several at once (batched decode), each from a prompt (BOS plus the first tokens of a
 * calibration sequence, or BOS alone) until EOS, `maxSampleTokens` or the context's end; they
 * follow each other with BOS between them, as documents do in recovery text.
 */
export interface SelfTextOptions {
  /** Tokens to generate in all (the stream is cut at this length). */
  tokens: number;
  seed: number;
  /** Prompts without BOS (empty ones start from BOS alone); used in turn. */
  prompts: readonly (readonly number[])[];
  /** Most tokens of one sample, prompt included (default: the model's context, at most 512). */
  maxSampleTokens?: number;
  /** Samples generated at once (default 8). */
  parallel?: number;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** What decides the sampled text (with the model's weights): a cache is keyed by it. */
export interface SelfTextRecipe {
  kind: 'self-recovery-text';
  tokens: number;
  seed: number;
  temperature: 1;
  maxSampleTokens: number;
  /** The prompt tokens, in order. */
  prompts: number[][];
}

/** Sampled text kept between prunes of the same model (the model store, in the server and `mop prune --model-store`). */
export interface SelfTextCache {
  load(recipe: SelfTextRecipe): Promise<number[] | undefined>;
  save(recipe: SelfTextRecipe, tokens: readonly number[]): Promise<void>;
}

/** Samples generated at once by default. */
export const SELF_TEXT_PARALLEL = 8;

/** The longest sample, prompt included: `maxSampleTokens` (default 512) within the model's context. */
function selfTextContext(spec: ModelWeights['spec'], maxSampleTokens = 512): number {
  return Math.min(maxSampleTokens, spec.maxContext);
}

export function selfTextRecipe(model: ModelWeights, o: SelfTextOptions): SelfTextRecipe {
  return {
    kind: 'self-recovery-text',
    tokens: o.tokens,
    seed: o.seed,
    temperature: 1,
    maxSampleTokens: selfTextContext(model.spec, o.maxSampleTokens),
    prompts: o.prompts.map((p) => [...p]),
  };
}

/** Draw a token from logits at temperature 1. */
function drawToken(logits: Float32Array, rng: Xoshiro128ss): number {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  let u = rng.nextFloat() * sum;
  for (let i = 0; i < logits.length; i++) {
    u -= Math.exp(logits[i]! - max);
    if (u <= 0) return i;
  }
  return logits.length - 1;
}

interface Slot {
  tokens: number[];
  /** Logits after the last token. */
  logits: Float32Array;
}

/** Sample `options.tokens` tokens of text from the model (see SelfTextOptions); deterministic for a seed and thread count. */
export async function generateSelfText(model: ModelWeights, tokenizer: Pick<Tokenizer, 'bosTokenId' | 'eosTokenIds'>, options: SelfTextOptions): Promise<number[]> {
  const bos = tokenizer.bosTokenId;
  if (bos === undefined) throw new MopInputError('--recovery-data self needs a tokenizer with a BOS token to start samples from');
  const r = selfTextRecipe(model, options);
  const parallel = Math.max(1, options.parallel ?? SELF_TEXT_PARALLEL);
  const eos = new Set(tokenizer.eosTokenIds);
  const session = await createDecoderSession(model.spec, model.weights, { maxBatch: parallel, maxContext: r.maxSampleTokens, ...(options.threads !== undefined && { threads: options.threads }) });
  const rng = new Xoshiro128ss(options.seed ^ 0x5e1f);
  const stream: number[] = [];
  let next = 0;
  const start = async (slot: number): Promise<Slot> => {
    const prompt = r.prompts.length > 0 ? r.prompts[next++ % r.prompts.length]!.slice(0, r.maxSampleTokens - 2) : [];
    session.reset(slot);
    return { tokens: [...prompt], logits: await session.prefill(slot, [bos, ...prompt]) };
  };
  try {
    const slots: Slot[] = [];
    for (let s = 0; s < parallel; s++) slots.push(await start(s));
    while (stream.length < r.tokens) {
      options.signal?.throwIfAborted();
      const entries: { slot: number; token: number }[] = [];
      for (let s = 0; s < parallel && stream.length < r.tokens; s++) {
        const slot = slots[s]!;
        const token = drawToken(slot.logits, rng);
        const full = slot.tokens.length + 2 >= r.maxSampleTokens;
        if (eos.has(token) || full) {
          if (!eos.has(token)) slot.tokens.push(token);
          if (stream.length > 0) stream.push(bos);
          stream.push(...slot.tokens);
          options.onProgress?.(Math.min(stream.length, r.tokens), r.tokens);
          slots[s] = await start(s);
          continue;
        }
        slot.tokens.push(token);
        entries.push({ slot: s, token });
      }
      if (entries.length === 0) continue;
      const logits = await session.decode(entries);
      entries.forEach((e, i) => (slots[e.slot]!.logits = logits[i]!));
    }
  } finally {
    await session.release();
  }
  return stream.slice(0, r.tokens);
}

/** Prompts for self-generated text: BOS plus the first `length` tokens of each calibration sequence (BOS alone without any). */
export function promptsFromCalibration(sequences: readonly Int32Array[], length = 8): number[][] {
  return sequences.length === 0 ? [[]] : sequences.map((s) => Array.from(s.subarray(1, 1 + length)));
}

/**
 * `--recovery-data self` as recovery windows: the cached sample when `cache` holds one for this
 * model and recipe, else sampled now and cached.
 */
export async function loadSelfRecoveryText(
  model: ModelWeights,
  tokenizer: Tokenizer,
  /** `alone`: the whole recovery text, so it must hold a batch (default); added to files that hold one, it need not. */
  options: SelfTextOptions & { seqLen: number; batch: number; cache?: SelfTextCache | undefined; alone?: boolean },
): Promise<RecoveryText> {
  const recipe = selfTextRecipe(model, options);
  let tokens = await options.cache?.load(recipe);
  const cached = tokens !== undefined;
  if (!tokens) {
    tokens = await generateSelfText(model, tokenizer, options);
    await options.cache?.save(recipe, tokens);
  }
  const label = `self: ${tokens.length} tokens sampled from the model (seed ${options.seed}, temperature 1${cached ? ', cached' : ''})`;
  const { windows } = streamWindows(tokenizer, tokens, options.seqLen);
  if (options.alone !== false) checkOneBatch([label], windows.length, tokens.length, options);
  return { windows, description: { sources: [label], textTokens: tokens.length, windows: windows.length, seqLen: options.seqLen } };
}
