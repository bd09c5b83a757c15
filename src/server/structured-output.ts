/**
 * A request's structured-output fields → the one GrammarSpec its generations are constrained by,
 * and the field it came from (the `param` of any 400 about it). OpenAI's `response_format`,
 * vLLM's `structured_outputs` and its older `guided_*` fields all map onto the same specs; a
 * request may use one of them. The grammar is compiled in the variant's engine worker before any
 * generation starts, so a bad one is a 400 and never a broken stream.
 */
import { GrammarError, GrammarLimitError, type GrammarSpec } from '../runtime/grammar/grammar-spec.ts';
import type { ServedVariant } from '../service/variants/served-variant.ts';
import { invalidRequest } from './errors.ts';
import type { ResponseFormat, StructuredOutputs } from './protocol.ts';
import { toApiError } from './service-errors.ts';

/** The request fields read here, as they arrive (null = omitted). */
export interface StructuredOutputFields {
  response_format?: ResponseFormat | null | undefined;
  structured_outputs?: StructuredOutputs | null | undefined;
  guided_json?: Record<string, unknown> | string | null | undefined;
  guided_regex?: string | null | undefined;
  guided_choice?: string[] | null | undefined;
  guided_grammar?: string | null | undefined;
}

export interface RequestedGrammar {
  spec: GrammarSpec;
  /** The request field it came from (`response_format.json_schema.schema`, `guided_regex`…). */
  param: string;
}

/** Any JSON object: what `json_object` asks for. */
const ANY_OBJECT = '{"type":"object"}';

/** The request's constraint, if it asks for one; a 400 naming the field when it is malformed or doubled. */
export function requestedGrammar(body: StructuredOutputFields): RequestedGrammar | undefined {
  const found: RequestedGrammar[] = [];
  const rf = body.response_format;
  if (rf?.type === 'json_object') found.push({ spec: { kind: 'json', schema: ANY_OBJECT }, param: 'response_format' });
  if (rf?.type === 'json_schema') {
    const schema = rf.json_schema.schema;
    const param = 'response_format.json_schema.schema';
    found.push({ spec: { kind: 'json', schema: schema ? JSON.stringify(schema) : ANY_OBJECT, format: { strict: rf.json_schema.strict !== false } }, param });
  }
  const so = body.structured_outputs;
  if (so) {
    if (so.json != null) found.push({ spec: jsonSpec(so.json, 'structured_outputs.json'), param: 'structured_outputs.json' });
    if (so.regex != null) found.push({ spec: { kind: 'regex', pattern: so.regex }, param: 'structured_outputs.regex' });
    if (so.choice != null) found.push({ spec: { kind: 'choice', choices: so.choice }, param: 'structured_outputs.choice' });
    if (so.grammar != null) found.push({ spec: { kind: 'ebnf', grammar: so.grammar }, param: 'structured_outputs.grammar' });
    if (so.json_object) found.push({ spec: { kind: 'json', schema: ANY_OBJECT }, param: 'structured_outputs.json_object' });
  }
  if (body.guided_json != null) found.push({ spec: jsonSpec(body.guided_json, 'guided_json'), param: 'guided_json' });
  if (body.guided_regex != null) found.push({ spec: { kind: 'regex', pattern: body.guided_regex }, param: 'guided_regex' });
  if (body.guided_choice != null) found.push({ spec: { kind: 'choice', choices: body.guided_choice }, param: 'guided_choice' });
  if (body.guided_grammar != null) found.push({ spec: { kind: 'ebnf', grammar: body.guided_grammar }, param: 'guided_grammar' });
  if (found.length > 1) {
    throw invalidRequest(`A request can carry one structured-output constraint; it has ${found.map((f) => f.param).join(' and ')}. Send only one of them.`, found[1]!.param);
  }
  return found[0];
}

/** A JSON Schema given as an object or as JSON text → the spec, with the text checked to be a schema object. */
function jsonSpec(value: Record<string, unknown> | string, param: string): GrammarSpec {
  if (typeof value !== 'string') return { kind: 'json', schema: JSON.stringify(value) };
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (e) {
    throw invalidRequest(`Invalid value for '${param}': the JSON Schema text does not parse (${(e as Error).message}).`, param);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw invalidRequest(`Invalid value for '${param}': a JSON Schema must be an object.`, param);
  return { kind: 'json', schema: JSON.stringify(parsed) };
}

/**
 * Compile the grammar in the variant's engine (cached there for the generations that follow),
 * within the server's grammar limits; a GrammarError is a 400 naming the field (code
 * `grammar_too_large` / `grammar_too_complex` past a limit), anything else (too many grammars
 * waiting to compile, engine down, shutting down) as usual.
 */
export async function checkRequestedGrammar(variant: ServedVariant, grammar: RequestedGrammar, log: (line: string) => void): Promise<void> {
  try {
    await variant.checkGrammar(grammar.spec);
  } catch (e) {
    if (e instanceof GrammarError) throw invalidRequest(`Invalid value for '${grammar.param}': ${e.message}`, grammar.param, e instanceof GrammarLimitError ? e.code : 'invalid_grammar');
    throw toApiError(e, log);
  }
}
