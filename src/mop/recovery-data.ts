import { resolve } from 'node:path';
import { packageRoot } from '../runtime/model/load.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { tokenizeText } from './calibration.ts';
import { MopInputError } from './errors.ts';
import { readTrainingTokens, type TrainingTextFormat, type TrainingTextOptions } from './training-text.ts';

/**
 * Recovery text: the token windows recovery fine-tuning trains on. Each text file is tokenized as
 * one stream and cut into non-overlapping windows of BOS + seqLen tokens (a last partial window is
 * dropped), so every position of a window trains. By default: the first 350 KB of the TinyStories
 * text the bundled slices come from (data/tinystories-recovery-start.txt and
 * data/tinystories-recovery.txt). It ends before the calibration slice, which ends before the
 * held-out slice, so recovery trains neither on the text MoP picks candidates by nor on the text
 * quality is measured on (test/mop/recovery-data.test.ts checks that no window is shared).
 */
export interface RecoveryText {
  windows: Int32Array[];
  /** With assistant-only loss: per window, 1 at the positions whose token trains (BOS is 0). */
  trainMasks?: Uint8Array[];
  description: RecoveryTextDescription;
}

export interface RecoveryTextDescription {
  sources: string[];
  /** How the text was read (plain text, JSONL records) and whether only assistant tokens train. */
  format?: TrainingTextFormat;
  records?: number;
  assistantOnly?: boolean;
  /** Tokens of all the text (windows hold all but the tail of each file). */
  textTokens: number;
  windows: number;
  seqLen: number;
}

/** The bundled first ~150 KB of the TinyStories source text (data/README.md). */
export function defaultRecoveryStartPath(): string {
  return resolve(packageRoot(), 'data/tinystories-recovery-start.txt');
}

/** The bundled ~200 KB that follow it in the source text (data/README.md). */
export function defaultRecoveryMiddlePath(): string {
  return resolve(packageRoot(), 'data/tinystories-recovery.txt');
}

/**
 * What recovery trains on without --recovery-data: the two recovery slices, none of it the
 * calibration text. Why apart: with a brief recovery per candidate, each candidate has just trained
 * on the text it is then scored on, and scores on seen text favoured the candidate the held-out
 * text did not (src/runtime/train/README.md, "Calibration text the recovery does not train on").
 */
export function defaultRecoverySources(): { path: string; label: string }[] {
  return [
    { path: defaultRecoveryStartPath(), label: 'bundled:data/tinystories-recovery-start.txt' },
    { path: defaultRecoveryMiddlePath(), label: 'bundled:data/tinystories-recovery.txt' },
  ];
}

/** Non-overlapping BOS + seqLen windows of a text. */
export function recoveryWindows(tokenizer: Tokenizer, text: string, seqLen: number): Int32Array[] {
  return streamWindows(tokenizer, tokenizeText(tokenizer, text), seqLen).windows;
}

/** Non-overlapping BOS + seqLen windows of a token stream (a last partial window is dropped), with the mask cut alike. */
export function streamWindows(tokenizer: Tokenizer, stream: readonly number[], seqLen: number, mask?: Uint8Array): { windows: Int32Array[]; trainMasks?: Uint8Array[] } {
  const bos = tokenizer.bosTokenId;
  if (bos === undefined) throw new MopInputError('the tokenizer has no BOS token; recovery windows start with one');
  const windows: Int32Array[] = [];
  const trainMasks: Uint8Array[] = [];
  for (let off = 0; off + seqLen <= stream.length; off += seqLen) {
    const w = new Int32Array(seqLen + 1);
    w[0] = bos;
    for (let t = 0; t < seqLen; t++) w[t + 1] = stream[off + t]!;
    if (mask) {
      const m = new Uint8Array(seqLen + 1);
      m.set(mask.subarray(off, off + seqLen), 1);
      // A window with nothing to train on (all context) is left out.
      if (!m.includes(1)) continue;
      trainMasks.push(m);
    }
    windows.push(w);
  }
  return mask ? { windows, trainMasks } : { windows };
}

export interface RecoveryTextOptions extends TrainingTextOptions {
  /** A text file (.txt, or .jsonl of text or chat records); default: the bundled recovery slices. */
  path?: string;
  seqLen: number;
  batch: number;
}

/**
 * Load recovery text (a file, or the bundled default) as windows; at least one batch of windows
 * must fit — a shorter text is an error naming both token counts.
 */
export async function loadRecoveryText(tokenizer: Tokenizer, options: RecoveryTextOptions): Promise<RecoveryText> {
  const sources = options.path !== undefined ? [{ path: options.path, label: options.path }] : defaultRecoverySources();
  const windows: Int32Array[] = [];
  const trainMasks: Uint8Array[] = [];
  let textTokens = 0;
  let records = 0;
  let format: TrainingTextFormat = 'text';
  for (const s of sources) {
    const read = await readTrainingTokens(s.path, s.label, 'recovery data', tokenizer, options);
    textTokens += read.tokens.length;
    records += read.records;
    format = read.format;
    const cut = streamWindows(tokenizer, read.tokens, options.seqLen, read.trainMask);
    windows.push(...cut.windows);
    if (cut.trainMasks) trainMasks.push(...cut.trainMasks);
  }
  const labels = sources.map((s) => s.label);
  checkOneBatch(labels, windows.length, textTokens, options);
  const assistantOnly = options.assistantOnly === true;
  return {
    windows,
    ...(assistantOnly && { trainMasks }),
    description: { sources: labels, ...(format === 'jsonl' && { format, records }), ...(assistantOnly && { assistantOnly }), textTokens, windows: windows.length, seqLen: options.seqLen },
  };
}

/** Several recovery texts as one: their windows in order, their sources listed (texts with train masks are not joined to others). */
export function joinRecoveryTexts(texts: readonly RecoveryText[]): RecoveryText {
  if (texts.length === 1) return texts[0]!;
  if (texts.length === 0 || texts.some((t) => t.trainMasks)) throw new Error('joinRecoveryTexts: needs texts without train masks');
  const first = texts[0]!.description;
  return {
    windows: texts.flatMap((t) => t.windows),
    description: {
      ...first,
      sources: texts.flatMap((t) => t.description.sources),
      textTokens: texts.reduce((n, t) => n + t.description.textTokens, 0),
      windows: texts.reduce((n, t) => n + t.description.windows, 0),
    },
  };
}

/** At least one batch of windows, or an error naming both token counts. */
export function checkOneBatch(labels: readonly string[], windows: number, textTokens: number, options: { seqLen: number; batch: number }): void {
  if (windows >= options.batch) return;
  const need = options.batch * options.seqLen;
  throw new MopInputError(
    `recovery data ${labels.join(' + ')} is too short: it has ${textTokens} tokens, one recovery batch of ${options.batch} × ${options.seqLen} needs ${need} (use a longer text or a smaller --recovery-batch / --recovery-seq-len)`,
  );
}
