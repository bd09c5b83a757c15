/**
 * What a request constrains its output to, as plain data: it crosses from the HTTP thread to the
 * engine worker in a structured-clone message, and its canonical form is the compile cache's key.
 */

/**
 * `json`: a JSON Schema (as JSON text; `{"type":"object"}` for any object). `regex`: a regular
 * expression the whole output matches. `choice`: exactly one of the strings. `ebnf`: an xgrammar
 * EBNF grammar (GBNF-like; rule `root`). `sequence`: fixed text and sub-grammars in order (a tool
 * call: its opening tag, its JSON, its closing tag).
 */
export type GrammarSpec =
  | { kind: 'json'; schema: string; format?: JsonFormat }
  | { kind: 'regex'; pattern: string }
  | { kind: 'choice'; choices: string[] }
  | { kind: 'ebnf'; grammar: string }
  | { kind: 'sequence'; parts: SequencePart[] };

export type SequencePart = { text: string } | { json: string };

/** How JSON output is laid out: vLLM's default is one line with `", "` and `": "`. */
export interface JsonFormat {
  /** Spaces per level, each value on its own line; absent = everything on one line. */
  indent?: number;
  /** Item and key separators; absent = `[", ", ": "]` (Python's json.dumps on one line). */
  separators?: [string, string];
  /**
   * xgrammar's strict mode: no properties or items the schema does not list (unless it allows
   * them explicitly). Default true, as vLLM compiles.
   */
  strict?: boolean;
}

/**
 * The grammar, the regex or the schema cannot be used: it does not parse, uses what xgrammar does
 * not support, or asks for text this model's vocabulary cannot produce. The message says which;
 * the HTTP layer answers 400 naming the field the grammar came from.
 */
export class GrammarError extends Error {
  override name = 'GrammarError';
}

/**
 * The grammar is past one of the server's limits on client grammars: larger than
 * `--max-grammar-bytes` (`grammar_too_large`), or not compiled within
 * `--grammar-compile-timeout-ms` (`grammar_too_complex`). A 400 like any GrammarError, with its own code.
 */
export class GrammarLimitError extends GrammarError {
  override name = 'GrammarLimitError';
  constructor(
    message: string,
    readonly code: 'grammar_too_large' | 'grammar_too_complex',
  ) {
    super(message);
  }
}

/**
 * UTF-8 bytes of what the client wrote: the schema text, the regex, the EBNF, every choice or part
 * together; each choice and part counts at least one byte (a million empty choices are a million
 * alternatives to compile, not nothing).
 */
export function grammarSpecBytes(spec: GrammarSpec): number {
  const bytes = (text: string) => Buffer.byteLength(text, 'utf8');
  switch (spec.kind) {
    case 'json':
      return bytes(spec.schema);
    case 'regex':
      return bytes(spec.pattern);
    case 'ebnf':
      return bytes(spec.grammar);
    case 'choice':
      return spec.choices.reduce((n, c) => n + Math.max(1, bytes(c)), 0);
    case 'sequence':
      return spec.parts.reduce((n, p) => n + Math.max(1, bytes('text' in p ? p.text : p.json)), 0);
  }
}

/** A stable key for a spec: equal specs (the same fields, in any order) give equal keys. */
export function grammarKey(spec: GrammarSpec): string {
  return JSON.stringify(spec, (_key, value: unknown) =>
    value && typeof value === 'object' && !Array.isArray(value) ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : value,
  );
}
