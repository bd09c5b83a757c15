import { resolve } from 'node:path';
import { packageRoot } from '../runtime/model/load.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { readTextFile, tokenizeText } from './calibration.ts';
import { MopInputError } from './errors.ts';

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
  description: RecoveryTextDescription;
}

export interface RecoveryTextDescription {
  sources: string[];
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
  const bos = tokenizer.bosTokenId;
  if (bos === undefined) throw new MopInputError('the tokenizer has no BOS token; recovery windows start with one');
  const stream = tokenizeText(tokenizer, text);
  const windows: Int32Array[] = [];
  for (let off = 0; off + seqLen <= stream.length; off += seqLen) windows.push(Int32Array.from([bos, ...stream.slice(off, off + seqLen)]));
  return windows;
}

/**
 * Load recovery text (a file, or the bundled default) as windows; at least one batch of windows
 * must fit — a shorter text is an error naming both token counts.
 */
export async function loadRecoveryText(tokenizer: Tokenizer, options: { path?: string; seqLen: number; batch: number }): Promise<RecoveryText> {
  const sources = options.path !== undefined ? [{ path: options.path, label: options.path }] : defaultRecoverySources();
  const windows: Int32Array[] = [];
  let textTokens = 0;
  for (const s of sources) {
    const text = await readTextFile(s.path, 'recovery data');
    textTokens += tokenizeText(tokenizer, text).length;
    windows.push(...recoveryWindows(tokenizer, text, options.seqLen));
  }
  const need = options.batch * options.seqLen;
  if (windows.length < options.batch) {
    throw new MopInputError(
      `recovery data ${sources.map((s) => s.label).join(' + ')} is too short: it has ${textTokens} tokens, one recovery batch of ${options.batch} × ${options.seqLen} needs ${need} (use a longer text or a smaller --recovery-batch / --recovery-seq-len)`,
    );
  }
  return { windows, description: { sources: sources.map((s) => s.label), textTokens, windows: windows.length, seqLen: options.seqLen } };
}
