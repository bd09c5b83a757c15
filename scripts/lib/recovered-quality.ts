/**
 * Quality of pruned + recovered models on more than one held-out text, for the recovery benchmarks
 * (bench-recovery-budget, bench-mop-edge): perplexity and mean KL(dense ‖ model) per text, and the
 * machine's load average (wall times on a shared machine mean little without it).
 *
 * The texts, none of which calibration or recovery reads (data/README.md):
 * - `heldout`: data/tinystories-heldout.txt, the file the defaults are reported on;
 * - `gap`: the unused bytes 509 491–538 044 of ../shared/data/tinystories-valid-part1.txt, between
 *   the calibration and the held-out slices (other stories, same format);
 * - `joined`: the held-out stories joined by single spaces (no blank lines): the same kind of text
 *   laid out as the second measurement had it.
 */
import fs from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';
import { defaultHeldoutPath } from '../../src/mop/calibration.ts';
import { klDivergence, perplexity, type TextWindows, textWindows } from '../../src/mop/evaluate.ts';
import type { ModelWeights } from '../../src/mop/surgery.ts';
import { packageRoot } from '../../src/runtime/model/load.ts';
import type { Tokenizer } from '../../src/runtime/tokenizer/types.ts';

export interface EvalText {
  name: string;
  windows: TextWindows;
}

/** Bytes of the shared source file that no bundled slice uses (data/README.md's table). */
const GAP_BYTES = [509_491, 538_044] as const;

export function evalTexts(tokenizer: Tokenizer, seqLen = 256): EvalText[] {
  const heldout = fs.readFileSync(defaultHeldoutPath(), 'utf8');
  const texts: EvalText[] = [{ name: 'heldout', windows: textWindows(tokenizer, heldout, seqLen) }];
  const source = resolve(packageRoot(), '../shared/data/tinystories-valid-part1.txt');
  if (fs.existsSync(source)) {
    const gap = fs.readFileSync(source).subarray(GAP_BYTES[0], GAP_BYTES[1]).toString('utf8');
    texts.push({ name: 'gap', windows: textWindows(tokenizer, gap, seqLen) });
  }
  const joined = heldout
    .split(/\n\s*\n/)
    .map((s) => s.replace(/\s+/g, ' ').trim())
    .filter(Boolean)
    .join(' ');
  texts.push({ name: 'joined', windows: textWindows(tokenizer, joined, seqLen) });
  return texts;
}

export interface TextQuality {
  perplexity: number;
  kl: number;
}

/** Per text: perplexity and KL to the dense model (the dense model itself gives KL 0). */
export async function qualityOn(texts: readonly EvalText[], model: ModelWeights, dense: ModelWeights, threads: number): Promise<Record<string, TextQuality>> {
  const out: Record<string, TextQuality> = {};
  for (const t of texts) {
    const ppl = await perplexity(model, t.windows, { threads });
    const kl = model === dense ? 0 : (await klDivergence(dense, model, t.windows, { threads })).meanKl;
    out[t.name] = { perplexity: ppl.perplexity, kl };
  }
  return out;
}

/** The 1-minute load average, for the record next to a wall time. */
export function loadAverage(): number {
  return os.loadavg()[0]!;
}

/** Mean and (sample) standard deviation. */
export function meanSd(xs: readonly number[]): { mean: number; sd: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
}
