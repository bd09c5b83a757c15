/**
 * Tool calls in the text a model writes, in the formats common chat templates teach it, chosen
 * from the template's own text (as vLLM's `--tool-call-parser` would be chosen by hand):
 *   - hermes (Qwen 2.5/3, Hermes, many fine-tunes): `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`,
 *     one block per call, text around them is content;
 *   - llama3-json (Llama 3.1/3.2/3.3): the whole answer is `{"name": …, "parameters": {…}}`
 *     (optionally after `<|python_tag|>`), several separated by `;`;
 *   - mistral: `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]` after any content.
 * Each format also says how a forced call (`tool_choice: "required"` or a named function) looks, as
 * a grammar the structured-output engine enforces.
 */
import { randomBytes } from 'node:crypto';
import type { GrammarSpec } from '../runtime/grammar/grammar-spec.ts';

export type ToolCallFormat = 'hermes' | 'llama3-json' | 'mistral';

/** A function the client offers (OpenAI's `tools[i].function`). */
export interface ToolFunction {
  name: string;
  description?: string | null | undefined;
  parameters?: Record<string, unknown> | null | undefined;
}

/** A parsed call, as OpenAI returns it (`arguments` is JSON text). */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ParsedAnswer {
  /** Text that is not a tool call (null when there is none and calls were found, as OpenAI answers). */
  content: string | null;
  toolCalls: ToolCall[];
}

/** The format a template teaches, from its text; undefined when it renders no tools (or none we know). */
export function toolCallFormatOf(templateText: string): ToolCallFormat | undefined {
  if (!/\btools\b/.test(templateText)) return undefined;
  if (templateText.includes('<tool_call>')) return 'hermes';
  if (templateText.includes('[TOOL_CALLS]')) return 'mistral';
  if (templateText.includes('<|python_tag|>') || templateText.includes('ipython') || /"parameters"/.test(templateText)) return 'llama3-json';
  return undefined;
}

/** The key a format writes a call's arguments under. */
const argumentsKey = (format: ToolCallFormat): string => (format === 'llama3-json' ? 'parameters' : 'arguments');

/** OpenAI's call ids: `call_` and 24 random characters. */
export function toolCallId(): string {
  return `call_${randomBytes(12).toString('hex')}`;
}

/**
 * The grammar of exactly one call to one of `functions` in this format (a named tool_choice passes
 * that function alone): its name fixed, its arguments valid against the function's parameters.
 */
export function forcedCallGrammar(format: ToolCallFormat, functions: readonly ToolFunction[]): GrammarSpec {
  const callSchema = (f: ToolFunction) => ({
    type: 'object',
    properties: { name: { const: f.name }, [argumentsKey(format)]: f.parameters ?? { type: 'object' } },
    required: ['name', argumentsKey(format)],
  });
  const schema = functions.length === 1 ? callSchema(functions[0]!) : { anyOf: functions.map(callSchema) };
  const json = JSON.stringify(schema);
  switch (format) {
    case 'hermes':
      return { kind: 'sequence', parts: [{ text: '<tool_call>\n' }, { json }, { text: '\n</tool_call>' }] };
    case 'mistral':
      return { kind: 'sequence', parts: [{ text: '[TOOL_CALLS][' }, { json }, { text: ']' }] };
    case 'llama3-json':
      return { kind: 'json', schema: json };
  }
}

/** Where a tool call starts in the answer (so far): its index, or -1. A marker is looked for from `from` on (a stream's text already searched). */
export function toolCallStart(format: ToolCallFormat, text: string, from = 0): number {
  switch (format) {
    case 'hermes':
      return text.indexOf('<tool_call>', from);
    case 'mistral':
      return text.indexOf('[TOOL_CALLS]', from);
    case 'llama3-json': {
      const lead = text.search(/\S/);
      if (lead < 0) return -1;
      return text.startsWith('<|python_tag|>', lead) || text[lead] === '{' ? lead : -1;
    }
  }
}

/** The markup a format writes around calls (which a tokenizer may have as control tokens). */
export function formatMarkers(format: ToolCallFormat): readonly string[] {
  return format === 'hermes' ? ['<tool_call>', '</tool_call>'] : format === 'mistral' ? ['[TOOL_CALLS]'] : ['<|python_tag|>'];
}

/** The longest start marker: text this long at the end of a stream may still become a call. */
export function markerLength(format: ToolCallFormat): number {
  return format === 'hermes' ? '<tool_call>'.length : format === 'mistral' ? '[TOOL_CALLS]'.length : '<|python_tag|>'.length;
}

/**
 * Splits a whole answer into content and tool calls. Calls that do not parse, or name a function
 * not offered, are left in the content (the client sees what the model wrote). With
 * `parallel: false` only the first call is kept.
 */
export function parseToolCalls(format: ToolCallFormat, text: string, offered: readonly ToolFunction[], parallel: boolean): ParsedAnswer {
  const names = new Set(offered.map((f) => f.name));
  const start = toolCallStart(format, text);
  if (start < 0) return { content: text, toolCalls: [] };
  const raw = rawCalls(format, text.slice(start));
  const calls: ToolCall[] = [];
  for (const value of raw ?? []) {
    const call = toCall(value, argumentsKey(format), names);
    if (!call) return { content: text, toolCalls: [] };
    calls.push(call);
  }
  if (calls.length === 0) return { content: text, toolCalls: [] };
  const content = text.slice(0, start).trim();
  return { content: content === '' ? null : content, toolCalls: parallel ? calls : calls.slice(0, 1) };
}

/** The JSON values of the calls in `text` (which starts at the first call); undefined if they do not parse. */
function rawCalls(format: ToolCallFormat, text: string): unknown[] | undefined {
  try {
    switch (format) {
      case 'hermes': {
        const blocks = [...text.matchAll(/<tool_call>([\s\S]*?)(?:<\/tool_call>|$)/g)];
        // Only whitespace may come between and after the blocks.
        if (text.replace(/<tool_call>[\s\S]*?(?:<\/tool_call>|$)/g, '').trim() !== '') return undefined;
        return blocks.map((m) => JSON.parse(m[1]!.trim()) as unknown);
      }
      case 'mistral': {
        const value = JSON.parse(text.slice('[TOOL_CALLS]'.length).trim()) as unknown;
        return Array.isArray(value) ? value : [value];
      }
      case 'llama3-json':
        return text
          .trim()
          .replace(/^<\|python_tag\|>/, '')
          .split(/;(?=\s*\{)/)
          .map((part) => JSON.parse(part) as unknown);
    }
  } catch {
    return undefined;
  }
}

function toCall(value: unknown, key: string, names: ReadonlySet<string>): ToolCall | undefined {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  const args = v[key] ?? v['arguments'] ?? v['parameters'] ?? {};
  if (typeof v['name'] !== 'string' || !names.has(v['name'])) return undefined;
  return { id: toolCallId(), type: 'function', function: { name: v['name'], arguments: typeof args === 'string' ? args : JSON.stringify(args) } };
}
