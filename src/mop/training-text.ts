import { promises as fs } from 'node:fs';
import { extname } from 'node:path';
import { type ChatTemplate, ChatTemplateRenderError, loadChatTemplate, type TemplateMessage } from '../runtime/tokenizer/chat-template.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { MopInputError } from './errors.ts';

/**
 * Text that recovery trains on or calibration draws from, in any of three forms, as one token
 * stream (no leading BOS: windows and sequences add their own):
 * - a `.txt` file: the whole text, one stream;
 * - a `.jsonl` file of `{"text": "..."}` records;
 * - a `.jsonl` file of chat records `{"messages": [{"role", "content"}, ...]}`, each rendered with
 *   the model's chat template (the checkpoint's, or the plain "role: content" transcript).
 * Records follow each other with BOS between them, the document boundary LLaMA-family models are
 * trained with. Bad input is a MopInputError naming the file and, for a record, its line.
 */
export type TrainingTextFormat = 'text' | 'jsonl';

export interface TrainingTokens {
  tokens: number[];
  /**
   * With assistant-only loss: 1 where the token belongs to an assistant message of a chat record
   * (trained), 0 elsewhere (context only). Undefined: every token trains.
   */
  trainMask?: Uint8Array;
  format: TrainingTextFormat;
  /** JSONL records read (0 for plain text). */
  records: number;
}

export interface TrainingTextOptions {
  /** The checkpoint's chat template text, for chat records (default: the plain transcript). */
  chatTemplate?: string | undefined;
  /** Mark the tokens of assistant messages (chat records); text records then train nothing. */
  assistantOnly?: boolean;
}

/** Read a text file with errors a user can act on: missing, not a file, empty. */
export async function readTextFile(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ENOENT') throw new MopInputError(`${what} file not found: ${path}`);
    if (code === 'EISDIR') throw new MopInputError(`${what} path is a directory, expected a text file: ${path}`);
    throw e;
  }
  if (text.trim() === '') throw new MopInputError(`${what} file is empty: ${path}`);
  return text;
}

/** Text → one token stream, without BOS (windows add their own). */
export function tokenizeText(tokenizer: Tokenizer, text: string): number[] {
  return tokenizer.encode(text, { addBos: false });
}

/** How a path is read: `.jsonl` (and `.ndjson`) as records, anything else as plain text. */
export function trainingTextFormat(path: string): TrainingTextFormat {
  const ext = extname(path).toLowerCase();
  return ext === '.jsonl' || ext === '.ndjson' ? 'jsonl' : 'text';
}

/** Read and tokenize a training-text file (`what` names it in errors: "recovery data", "calibration"). */
export async function readTrainingTokens(path: string, label: string, what: string, tokenizer: Tokenizer, options: TrainingTextOptions = {}): Promise<TrainingTokens> {
  const text = await readTextFile(path, what);
  if (trainingTextFormat(path) === 'text') {
    const tokens = tokenizer.encode(text, { addBos: false });
    if (options.assistantOnly) throw new MopInputError(`${what} ${label}: assistant-only loss needs chat records (a .jsonl file of {"messages": [...]}); plain text has no assistant turns`);
    return { tokens, format: 'text', records: 0 };
  }
  return tokenizeRecords(parseRecords(text, label, what), label, what, tokenizer, options);
}

/** One JSONL record: text, or a conversation. */
export type TrainingRecord = { line: number; text: string } | { line: number; messages: TemplateMessage[] };

/** JSONL lines → records; blank lines are skipped; a bad line is an error naming it. */
export function parseRecords(text: string, label: string, what: string): TrainingRecord[] {
  const records: TrainingRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (raw === '') continue;
    const at = `${what} ${label} line ${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      throw new MopInputError(`${at}: not valid JSON (${(e as Error).message}); each line must be one JSON object`);
    }
    records.push(recordOf(value, i + 1, at));
  }
  if (records.length === 0) throw new MopInputError(`${what} ${label}: no records (a .jsonl file needs one JSON object per line)`);
  return records;
}

const RECORD_SHAPE = 'a record needs a "text" string or a "messages" array of {"role": string, "content": string}';

function recordOf(value: unknown, line: number, at: string): TrainingRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new MopInputError(`${at}: not a JSON object; ${RECORD_SHAPE}`);
  const v = value as Record<string, unknown>;
  if (typeof v.text === 'string') return { line, text: v.text };
  if (!Array.isArray(v.messages)) throw new MopInputError(`${at}: ${RECORD_SHAPE}`);
  if (v.messages.length === 0) throw new MopInputError(`${at}: "messages" is empty`);
  const messages = v.messages.map((m: unknown, k: number): TemplateMessage => {
    const msg = m as Record<string, unknown> | null;
    if (typeof msg !== 'object' || msg === null || typeof msg.role !== 'string') throw new MopInputError(`${at}: message ${k} needs a "role" string`);
    const content = contentText(msg.content);
    if (content === undefined) throw new MopInputError(`${at}: message ${k} needs "content": a string or an array of {"type": "text", "text": string}`);
    return { role: msg.role, content, ...(typeof msg.name === 'string' && { name: msg.name }) };
  });
  return { line, messages };
}

/** A message's content as text: a string, or its text parts joined (OpenAI's shape). */
function contentText(c: unknown): string | undefined {
  if (typeof c === 'string') return c;
  if (c === null) return '';
  if (!Array.isArray(c)) return undefined;
  const parts = c.map((p) => (typeof p === 'object' && p !== null && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : undefined));
  return parts.every((p) => p !== undefined) ? parts.join('') : undefined;
}

function tokenizeRecords(records: TrainingRecord[], label: string, what: string, tokenizer: Tokenizer, options: TrainingTextOptions): TrainingTokens {
  const bos = tokenizer.bosTokenId;
  let template: ChatTemplate | undefined;
  const tokens: number[] = [];
  const mask: number[] = [];
  for (const r of records) {
    if (tokens.length > 0 && bos !== undefined) {
      tokens.push(bos);
      mask.push(0);
    }
    if ('text' in r) {
      const ids = tokenizer.encode(r.text, { addBos: false });
      tokens.push(...ids);
      for (let i = 0; i < ids.length; i++) mask.push(0);
      continue;
    }
    template ??= loadChatTemplate(undefined, options.chatTemplate);
    const chat = renderChat(template, r.messages, tokenizer, options.assistantOnly === true, `${what} ${label} line ${r.line}`);
    tokens.push(...chat.tokens);
    mask.push(...chat.mask);
  }
  if (!options.assistantOnly) return { tokens, format: 'jsonl', records: records.length };
  if (!mask.includes(1)) throw new MopInputError(`${what} ${label}: assistant-only loss, but no record has an assistant message with text`);
  return { tokens, trainMask: Uint8Array.from(mask), format: 'jsonl', records: records.length };
}

/**
 * A conversation's tokens (the template's leading BOS dropped) and, with `assistantOnly`, which of
 * them are assistant text: from where the conversation before an assistant message, with the cue
 * for its turn, stops agreeing with the whole rendering, to where the conversation through it does.
 */
function renderChat(template: ChatTemplate, messages: TemplateMessage[], tokenizer: Tokenizer, assistantOnly: boolean, at: string): { tokens: number[]; mask: number[] } {
  const encode = (ms: TemplateMessage[], addGenerationPrompt: boolean): number[] => {
    try {
      const ids = template.encode(ms, tokenizer, { addGenerationPrompt });
      return tokenizer.bosTokenId !== undefined && ids[0] === tokenizer.bosTokenId ? ids.slice(1) : ids;
    } catch (e) {
      if (e instanceof ChatTemplateRenderError) throw new MopInputError(`${at}: ${e.message}`);
      throw e;
    }
  };
  const tokens = encode(messages, false);
  const mask = new Array<number>(tokens.length).fill(0);
  if (!assistantOnly) return { tokens, mask };
  for (let i = 0; i < messages.length; i++) {
    if (messages[i]!.role !== 'assistant') continue;
    const start = agreeing(encode(messages.slice(0, i), true), tokens);
    const end = agreeing(encode(messages.slice(0, i + 1), false), tokens);
    for (let t = start; t < end; t++) mask[t] = 1;
  }
  return { tokens, mask };
}

/** How many leading tokens `a` shares with `b`. */
function agreeing(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}
