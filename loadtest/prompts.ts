/**
 * Prompts and which one request i gets. The k6 script has the same two functions, line for line
 * (a test checks they choose the same prompt for the same request number).
 */
import fs from 'node:fs/promises';
import { LoadConfigError, type PromptOrder } from './options.ts';

/** One prompt a line; surrounding whitespace trimmed; blank lines and `#` comments skipped. */
export function parsePrompts(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

export async function loadPrompts(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new LoadConfigError(`cannot read prompt file ${file}: ${(err as Error).message}`);
  }
  const prompts = parsePrompts(text);
  if (prompts.length === 0) throw new LoadConfigError(`prompt file ${file} has no prompts`);
  return prompts;
}

/** A 32-bit integer hash (the finalizer of MurmurHash3/splitmix-style mixers). */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Index of the prompt of request `i` (0-based, in the order requests are sent) among `n` prompts. */
export function promptIndex(i: number, n: number, order: PromptOrder, seed: number): number {
  if (order === 'random') return mix32((mix32(seed >>> 0) ^ i) >>> 0) % n;
  return i % n;
}
