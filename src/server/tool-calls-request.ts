/**
 * A chat request's `tools`, `tool_choice` and `parallel_tool_calls` → how its answer is made and
 * read: the tools go to the chat template, a forced choice (`required`, a named function) becomes
 * a grammar the structured-output engine enforces, and the answer is parsed back into
 * `tool_calls` in the format the template teaches. Every refusal is a 400 naming the field.
 */
import type { GrammarSpec } from '../runtime/grammar/grammar-spec.ts';
import type { GenerationEvent } from '../runtime/engine/sequence.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import type { ChatTemplate } from './chat-template.ts';
import { invalidRequest } from './errors.ts';
import type { ChatRequest } from './protocol.ts';
import { forcedCallGrammar, formatMarkers, type ToolCallFormat, type ToolFunction } from './tool-calls.ts';
import type { StructuredOutputFields } from './structured-output.ts';

export interface ToolUse {
  format: ToolCallFormat;
  /** The functions offered (the template renders them; the parser accepts only these names). */
  functions: ToolFunction[];
  /** `parallel_tool_calls` (default true): false keeps the first call only. */
  parallel: boolean;
  /** The grammar of a forced call (`required` or a named function); undefined for `auto`. */
  grammar: GrammarSpec | undefined;
  /**
   * The format's markup that the tokenizer has as control tokens, by id: a control token decodes
   * to no text (Mistral's `[TOOL_CALLS]`, Llama 3.1's `<|python_tag|>`), so the parser reads it by id.
   */
  markers: ReadonlyMap<number, string>;
}

/** The markup an answer's event stands for when its token is one of the format's control tokens. */
export function controlMarker(e: GenerationEvent, tools: Pick<ToolUse, 'markers'>): string | undefined {
  return e.type === 'token' ? tools.markers.get(e.token) : undefined;
}

/** The text an answer's event adds for the tool-call parser: its text, with a control-token marker spelled out. */
export function toolParseText(e: GenerationEvent, tools: Pick<ToolUse, 'markers'>): string {
  return e.text + (controlMarker(e, tools) ?? '');
}

/** Those of `format`'s markers that `tokenizer` encodes as one control token (no text of its own), by id. */
export function controlMarkers(tokenizer: Pick<Tokenizer, 'encode' | 'decode'>, format: ToolCallFormat): ReadonlyMap<number, string> {
  const out = new Map<number, string>();
  for (const marker of formatMarkers(format)) {
    const ids = tokenizer.encode([{ text: marker, specialTokens: 'parse' }], { addBos: false });
    if (ids.length === 1 && tokenizer.decode(ids) === '') out.set(ids[0]!, marker);
  }
  return out;
}

/** How the request uses tools; undefined when it offers none or says `tool_choice: "none"`. */
export function toolUseOf(body: ChatRequest, template: Pick<ChatTemplate, 'toolFormat'>, tokenizer: Pick<Tokenizer, 'encode' | 'decode'>): ToolUse | undefined {
  const tools = body.tools ?? [];
  const choice = body.tool_choice ?? (tools.length > 0 ? 'auto' : 'none');
  if (tools.length === 0) {
    if (choice !== 'none' && choice !== 'auto') throw invalidRequest('tool_choice asks for a tool call, but the request offers no tools.', 'tool_choice');
    return undefined;
  }
  if (choice === 'none') return undefined;
  const format = template.toolFormat;
  if (!format) {
    throw invalidRequest(
      "This model's chat template does not render tools in a tool-call format this server reads (Hermes <tool_call>, Llama 3.1 JSON, Mistral [TOOL_CALLS]): serve it with a --chat-template that does, or send the request without tools.",
      'tools',
    );
  }
  const functions: ToolFunction[] = tools.map((t) => t.function);
  const names = new Set<string>();
  tools.forEach((t, i) => {
    if (names.has(t.function.name)) throw invalidRequest(`Two tools are named '${t.function.name}': names must be unique.`, `tools[${i}].function.name`);
    names.add(t.function.name);
  });
  let forced: ToolFunction[] | undefined;
  if (choice === 'required') forced = functions;
  else if (typeof choice === 'object') {
    const named = functions.find((f) => f.name === choice.function.name);
    if (!named) throw invalidRequest(`tool_choice names '${choice.function.name}', which is not among the tools.`, 'tool_choice.function.name');
    forced = [named];
  }
  if (forced && hasStructuredOutput(body)) throw invalidRequest('A forced tool call (tool_choice required or a named function) cannot be combined with response_format or structured outputs.', 'tool_choice');
  return { format, functions, parallel: body.parallel_tool_calls ?? true, grammar: forced && forcedCallGrammar(format, forced), markers: controlMarkers(tokenizer, format) };
}

function hasStructuredOutput(body: StructuredOutputFields): boolean {
  return (
    (body.response_format != null && body.response_format.type !== 'text') ||
    body.structured_outputs != null ||
    body.guided_json != null ||
    body.guided_regex != null ||
    body.guided_choice != null ||
    body.guided_grammar != null
  );
}
