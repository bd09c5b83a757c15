import { resolve } from 'node:path';
import { packageRoot } from '../runtime/model/load.ts';
import { Xoshiro128ss } from '../runtime/engine/rng.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { MopInputError } from './errors.ts';
import { readTrainingTokens, tokenizeText } from './training-text.ts';

/**
 * Calibration data: N sequences of T tokens of real text, drawn with a seed. The text is tokenized
 * as one stream and cut into non-overlapping pieces of T−1 tokens; N of them are drawn and each
 * gets BOS in front, the context the model saw at the start of every training document.
 * Held-out evaluation text is a different file (data/tinystories-heldout.txt for the bundled
 * model), never a slice of this set.
 */
export interface CalibrationSet {
  /** N sequences of exactly seqLen token ids, each starting with BOS. */
  sequences: Int32Array[];
  seqLen: number;
  /** Where the text came from and how it was cut, for reports. */
  description: CalibrationDescription;
}

export interface CalibrationDescription {
  source: string;
  samples: number;
  seqLen: number;
  seed: number;
  /** Tokens in the whole text. */
  textTokens: number;
}

export interface CalibrationOptions {
  /**
   * Text file (.txt, or .jsonl of text or chat records: training-text.ts); default: the bundled
   * TinyStories calibration slice (text recovery does not train on).
   */
  path?: string;
  /** The checkpoint's chat template, for chat records. */
  chatTemplate?: string | undefined;
  samples: number;
  seqLen: number;
  seed: number;
}

/** The bundled default calibration text (first ~150 KB of TinyStories validation, see data/README.md). */
export function defaultCalibrationPath(): string {
  return resolve(packageRoot(), 'data/tinystories-calibration.txt');
}

/** The bundled held-out text (last ~100 KB, disjoint from the calibration slice). */
export function defaultHeldoutPath(): string {
  return resolve(packageRoot(), 'data/tinystories-heldout.txt');
}

// Reading and tokenizing text files lives with the formats they come in.
export { readTextFile, tokenizeText } from './training-text.ts';

export function checkSamplingShape(samples: number, seqLen: number): void {
  if (!Number.isInteger(samples) || samples < 1) throw new MopInputError(`samples must be a positive integer, got ${samples}`);
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new MopInputError(`sequence length must be an integer of at least 2, got ${seqLen}`);
}

/** Draw N sequences of T tokens from `text` (see CalibrationSet). */
export function calibrationFromText(tokenizer: Tokenizer, text: string, options: Omit<CalibrationOptions, 'path' | 'chatTemplate'> & { source: string }): CalibrationSet {
  return calibrationFromTokens(tokenizer, tokenizeText(tokenizer, text), options);
}

/** Draw N sequences of T tokens from a token stream (see CalibrationSet). */
export function calibrationFromTokens(tokenizer: Tokenizer, stream: readonly number[], options: Omit<CalibrationOptions, 'path' | 'chatTemplate'> & { source: string }): CalibrationSet {
  const { samples, seqLen, seed, source } = options;
  checkSamplingShape(samples, seqLen);
  const bos = tokenizer.bosTokenId;
  if (bos === undefined) throw new MopInputError(`the tokenizer has no BOS token; calibration sequences start with one`);
  const piece = seqLen - 1;
  const pieces = Math.floor(stream.length / piece);
  if (pieces < samples) {
    throw new MopInputError(
      `calibration text ${source} is too short: it has ${stream.length} tokens, ${samples} samples of ${seqLen} tokens need ${samples * piece} (${samples} × ${piece} plus BOS each); use a longer text or fewer/shorter samples`,
    );
  }
  const chosen = drawDistinct(pieces, samples, seed).sort((a, b) => a - b);
  const sequences = chosen.map((k) => {
    const s = new Int32Array(seqLen);
    s[0] = bos;
    for (let t = 1; t < seqLen; t++) s[t] = stream[k * piece + t - 1]!;
    return s;
  });
  return { sequences, seqLen, description: { source, samples, seqLen, seed, textTokens: stream.length } };
}

/** Load and cut calibration text from a file (or the bundled default). */
export async function loadCalibration(tokenizer: Tokenizer, options: CalibrationOptions): Promise<CalibrationSet> {
  checkSamplingShape(options.samples, options.seqLen);
  const path = options.path ?? defaultCalibrationPath();
  const source = options.path ?? 'bundled:data/tinystories-calibration.txt';
  const read = await readTrainingTokens(path, source, 'calibration', tokenizer, { chatTemplate: options.chatTemplate });
  const { chatTemplate: _t, path: _p, ...shape } = options;
  return calibrationFromTokens(tokenizer, read.tokens, { ...shape, source });
}

/** `count` distinct integers from [0, n), chosen by a seeded partial Fisher–Yates shuffle. */
function drawDistinct(n: number, count: number, seed: number): number[] {
  const rng = new Xoshiro128ss(seed);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(rng.nextFloat() * (n - i));
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx.slice(0, count);
}
