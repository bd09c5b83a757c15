/**
 * A renderer for the subset of Helm's template language that deploy/helm/mop-serve uses, so CI
 * can render the chart without a helm binary. It is a checker, not a replacement: the reference
 * copies in deploy/helm/rendered/ come from a real `helm template`, and helm-chart.test.ts asserts
 * that this renderer reproduces them. Anything outside the subset throws, naming the construct,
 * rather than rendering something helm would not.
 *
 * The subset (Go text/template + Sprig, with Helm's value semantics):
 * - actions `{{ }}` with trim markers `{{- ` / ` -}}`, comments `{{/* *\/}}`
 * - `if` / `else if` / `else`, `with` (no else), `range` over lists and over maps as `$k, $v :=`
 *   (keys in sorted order, as Go does), `define` + `include`, variables (`$x :=`, `$x =`, `$`)
 * - pipelines with `|`, parenthesised sub-pipelines, string ("…" and `…`), number, bool, nil literals
 * - objects: .Values, .Chart.{Name,Version,AppVersion}, .Release.{Name,Namespace,Service,IsInstall,
 *   IsUpgrade,Revision}, .Template.{Name,BasePath}, .Files.Get
 * - functions: include default quote toYaml nindent indent trunc trimSuffix contains replace printf
 *   print sha256sum int int64 add mul not and or eq ne gt lt
 * Values keep Helm's types: every number from a values file is a float64 (so `{{ 4194304 }}`-like
 * output prints Go's 4.194304e+06, hence `int64` in the chart), integer literals and int/int64/add/mul
 * results are Go integers.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

// ---------------------------------------------------------------------------------------------
// Values and their Go semantics

/** A Go integer (int / int64). Plain JS numbers stand for float64, as every number in values does. */
export class GoInt {
  constructor(readonly n: number) {}
}

type Value = unknown;

export class TemplateError extends Error {
  override name = 'TemplateError';
}

function isMap(v: Value): v is Record<string, Value> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof GoInt) && !(v instanceof HelmObject);
}

/** Go template truth: false, 0, nil, and empty strings, lists and maps are false. */
function truthy(v: Value): boolean {
  if (v === undefined || v === null || v === false || v === '' || v === 0) return false;
  if (v instanceof GoInt) return v.n !== 0;
  if (Array.isArray(v)) return v.length > 0;
  if (isMap(v)) return Object.keys(v).length > 0;
  return true;
}

/**
 * Go's %v of a float64: the shortest digits that round-trip, in exponent form when the exponent
 * is below -4 or at least 6 (fmt decides with precision 6 for the shortest form: 1e+06, 4.194304e+06).
 */
export function formatGoFloat(f: number): string {
  if (Number.isNaN(f)) return 'NaN';
  if (!Number.isFinite(f)) return f > 0 ? '+Inf' : '-Inf';
  if (f === 0) return Object.is(f, -0) ? '-0' : '0';
  const [mantissa, expText] = f.toExponential().split('e') as [string, string];
  const exp = Number(expText);
  if (exp < -4 || exp >= 6) return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  return String(f);
}

/** fmt's %v for the kinds the chart prints; maps and lists are outside the subset. */
function formatValue(v: Value): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return formatGoFloat(v);
  if (v instanceof GoInt) return String(v.n);
  throw new TemplateError(`printing a ${Array.isArray(v) ? 'list' : 'map'} directly is outside the subset (use toYaml)`);
}

/** strconv.Quote. */
function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + '"';
}

/** cast.ToInt64 as Sprig's int/int64 use it. */
function toInt(v: Value): number {
  if (v instanceof GoInt) return v.n;
  if (typeof v === 'number') {
    if (Math.abs(v) >= 2 ** 63) throw new TemplateError(`int64 of ${v} overflows`);
    return Math.trunc(v);
  }
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (v === undefined || v === null) return 0;
  if (typeof v === 'string') {
    const s = v.trim();
    if (/^[+-]?(0x[0-9a-f]+|0o?[0-7]+|0b[01]+|[0-9]+)$/i.test(s)) return Number(s.replace(/^([+-]?)0(?=[0-7])/, '$10o'));
    return 0;
  }
  throw new TemplateError(`int/int64 of a ${Array.isArray(v) ? 'list' : 'map'}`);
}

/** Plain data for toYaml: GoInt → number, as json.Marshal would give. */
function plain(v: Value): Value {
  if (v instanceof GoInt) return v.n;
  if (Array.isArray(v)) return v.map(plain);
  if (isMap(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** Helm's toYaml: sigs.k8s.io/yaml (JSON, then YAML with sorted keys, block style), trailing newline trimmed. */
function toYaml(v: Value): string {
  const text = YAML.stringify(plain(v) ?? null, { version: '1.1', sortMapEntries: true, indentSeq: false, lineWidth: 0, defaultStringType: 'PLAIN', defaultKeyType: 'PLAIN' });
  return text.replace(/\n$/, '');
}

function indent(n: number, s: string): string {
  const pad = ' '.repeat(n);
  return pad + s.replaceAll('\n', '\n' + pad);
}

function compare(op: string, a: Value, b: Value): number {
  const num = (x: Value) => (x instanceof GoInt ? { kind: 'int', n: x.n } : typeof x === 'number' ? { kind: 'float', n: x } : undefined);
  const na = num(a);
  const nb = num(b);
  if (na && nb) {
    if (na.kind !== nb.kind) throw new TemplateError(`${op}: incompatible types for comparison (int and float64)`);
    return na.n - nb.n;
  }
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'boolean' && typeof b === 'boolean' && (op === 'eq' || op === 'ne')) return a === b ? 0 : 1;
  throw new TemplateError(`${op}: comparing ${typeof a} with ${typeof b} is outside the subset`);
}

/** fmt.Sprintf for %s, %d, %v, %q and %%. */
function printf(format: string, args: Value[]): string {
  let i = 0;
  return format.replace(/%([sdvq%])/g, (_, verb: string) => {
    if (verb === '%') return '%';
    if (i >= args.length) throw new TemplateError(`printf: missing argument for %${verb}`);
    const a = args[i++];
    if (verb === 's' && typeof a !== 'string') throw new TemplateError(`printf: %s of a non-string (${typeof a}) prints %!s(...) in Go; outside the subset`);
    if (verb === 'd' && !(a instanceof GoInt)) throw new TemplateError('printf: %d needs a Go integer (use int64)');
    if (verb === 'q') return goQuote(formatValue(a));
    return formatValue(a);
  });
}

/** fmt.Sprint: spaces between operands when neither is a string. */
function sprint(args: Value[]): string {
  let out = '';
  args.forEach((a, i) => {
    if (i > 0 && typeof a !== 'string' && typeof args[i - 1] !== 'string') out += ' ';
    out += formatValue(a);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Helm's built-in objects: fields the subset knows; any other field is an error, not "".

class HelmObject {
  constructor(
    readonly kind: string,
    readonly fields: Record<string, Value>,
  ) {}
  get(name: string): Value {
    if (!(name in this.fields)) throw new TemplateError(`.${this.kind}.${name} is outside the subset`);
    return this.fields[name];
  }
}

// ---------------------------------------------------------------------------------------------
// Lexing and parsing

type Operand =
  | { kind: 'field'; base: 'dot' | 'var'; varName?: string; path: string[] }
  | { kind: 'ident'; name: string }
  | { kind: 'literal'; value: Value }
  | { kind: 'pipe'; pipe: Pipeline };

interface Command {
  args: Operand[];
}

interface Pipeline {
  decl?: { names: string[]; op: ':=' | '=' };
  cmds: Command[];
}

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; pipe: Pipeline; where: string }
  | { kind: 'if'; branches: { pipe: Pipeline; body: Node[] }[]; otherwise: Node[] | undefined; where: string }
  | { kind: 'with'; pipe: Pipeline; body: Node[]; where: string }
  | { kind: 'range'; pipe: Pipeline; vars: string[]; body: Node[]; where: string };

interface RawAction {
  kind: 'action';
  body: string;
  where: string;
}
type Piece = { kind: 'text'; text: string } | RawAction;

/** Split a template into text and actions, applying the trim markers. */
function lex(src: string, file: string): Piece[] {
  const pieces: Piece[] = [];
  let pos = 0;
  const lineAt = (i: number) => src.slice(0, i).split('\n').length;
  while (pos < src.length) {
    const open = src.indexOf('{{', pos);
    if (open < 0) {
      pieces.push({ kind: 'text', text: src.slice(pos) });
      break;
    }
    let text = src.slice(pos, open);
    let start = open + 2;
    const trimLeft = /^-[ \t\r\n]/.test(src.slice(start, start + 2));
    if (trimLeft) {
      text = text.replace(/[ \t\r\n]+$/, '');
      start += 1;
    }
    pieces.push({ kind: 'text', text });
    const where = `${file}:${lineAt(open)}`;
    const rest = src.slice(start).replace(/^[ \t\r\n]*/, '');
    const restStart = src.length - rest.length;
    let close: number;
    let body: string;
    if (rest.startsWith('/*')) {
      const end = src.indexOf('*/', restStart + 2);
      if (end < 0) throw new TemplateError(`${where}: unclosed comment`);
      const after = src.slice(end + 2);
      const m = /^([ \t\r\n]*-)?([ \t\r\n]*)\}\}/.exec(after);
      if (!m) throw new TemplateError(`${where}: a comment must end with */}}`);
      close = end + 2 + m[0].length;
      pos = close;
      if (m[1]) {
        const tail = /^[ \t\r\n]*/.exec(src.slice(pos))![0];
        pos += tail.length;
      }
      continue;
    } else {
      // Find the closing }} outside string literals.
      let i = start;
      let quote: string | undefined;
      for (; i < src.length; i++) {
        const c = src[i];
        if (quote) {
          if (quote === '"' && c === '\\') i++;
          else if (c === quote) quote = undefined;
        } else if (c === '"' || c === '`') quote = c;
        else if (c === '}' && src[i + 1] === '}') break;
      }
      if (i >= src.length) throw new TemplateError(`${where}: unclosed action`);
      close = i;
      body = src.slice(start, close);
    }
    let trimRight = false;
    if (/[ \t\r\n]-$/.test(body)) {
      trimRight = true;
      body = body.slice(0, -1);
    }
    pieces.push({ kind: 'action', body: body.trim(), where });
    pos = close + 2;
    if (trimRight) pos += /^[ \t\r\n]*/.exec(src.slice(pos))![0].length;
  }
  return pieces;
}

type Token = { t: 'field' | 'var' | 'ident' | 'str' | 'num' | 'punct'; v: string };

function tokenize(body: string, where: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < body.length) {
    const c = body[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const rest = body.slice(i);
    let m: RegExpExecArray | null;
    if (c === '"') {
      m = /^"(?:[^"\\]|\\.)*"/.exec(rest);
      if (!m) throw new TemplateError(`${where}: unterminated string`);
      tokens.push({ t: 'str', v: JSON.parse(m[0]) as string });
    } else if (c === '`') {
      m = /^`[^`]*`/.exec(rest);
      if (!m) throw new TemplateError(`${where}: unterminated raw string`);
      tokens.push({ t: 'str', v: m[0].slice(1, -1) });
    } else if ((m = /^:=|^[=|(),]/.exec(rest))) {
      tokens.push({ t: 'punct', v: m[0] });
    } else if ((m = /^\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*/.exec(rest))) {
      tokens.push({ t: 'var', v: m[0] });
    } else if ((m = /^(?:\.[A-Za-z0-9_]+)+|^\./.exec(rest))) {
      tokens.push({ t: 'field', v: m[0] });
    } else if ((m = /^[+-]?(?:0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)/.exec(rest))) {
      tokens.push({ t: 'num', v: m[0] });
    } else if ((m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest))) {
      tokens.push({ t: 'ident', v: m[0] });
    } else throw new TemplateError(`${where}: unexpected '${c}' in action`);
    i += m[0].length;
  }
  return tokens;
}

function parsePipeline(tokens: Token[], where: string): Pipeline {
  let pos = 0;
  const pipe = parsePipe();
  if (pos !== tokens.length) throw new TemplateError(`${where}: unexpected '${tokens[pos]!.v}'`);
  return pipe;

  function parsePipe(): Pipeline {
    const result: Pipeline = { cmds: [] };
    // Declarations: $a := …, $a, $b := … (range), $a = …
    const declEnd = tokens.findIndex((t, i) => i >= pos && t.t === 'punct' && (t.v === ':=' || t.v === '='));
    if (declEnd > pos && tokens.slice(pos, declEnd).every((t) => t.t === 'var' || (t.t === 'punct' && t.v === ','))) {
      const names = tokens.slice(pos, declEnd).filter((t) => t.t === 'var').map((t) => t.v);
      result.decl = { names, op: tokens[declEnd]!.v as ':=' | '=' };
      pos = declEnd + 1;
    }
    for (;;) {
      const cmd: Command = { args: [] };
      while (pos < tokens.length && !(tokens[pos]!.t === 'punct' && (tokens[pos]!.v === '|' || tokens[pos]!.v === ')'))) {
        cmd.args.push(parseOperand());
      }
      if (cmd.args.length === 0) throw new TemplateError(`${where}: empty command`);
      result.cmds.push(cmd);
      if (pos < tokens.length && tokens[pos]!.v === '|') {
        pos++;
        continue;
      }
      return result;
    }
  }

  function parseOperand(): Operand {
    const tok = tokens[pos++]!;
    switch (tok.t) {
      case 'str':
        return { kind: 'literal', value: tok.v };
      case 'num':
        return { kind: 'literal', value: /^[+-]?(0x[0-9a-f]+|[0-9]+)$/i.test(tok.v) ? new GoInt(Number(tok.v)) : Number(tok.v) };
      case 'field':
        return { kind: 'field', base: 'dot', path: tok.v === '.' ? [] : tok.v.slice(1).split('.') };
      case 'var': {
        const [name, ...path] = tok.v.split('.');
        return { kind: 'field', base: 'var', varName: name!, path };
      }
      case 'ident':
        if (tok.v === 'true' || tok.v === 'false') return { kind: 'literal', value: tok.v === 'true' };
        if (tok.v === 'nil') return { kind: 'literal', value: null };
        return { kind: 'ident', name: tok.v };
      case 'punct':
        if (tok.v === '(') {
          const inner = parsePipe();
          if (tokens[pos]?.v !== ')') throw new TemplateError(`${where}: missing ')'`);
          pos++;
          return { kind: 'pipe', pipe: inner };
        }
    }
    throw new TemplateError(`${where}: unexpected '${tok.v}'`);
  }
}

interface Parsed {
  nodes: Node[];
  defines: Map<string, Node[]>;
}

function parse(pieces: Piece[]): Parsed {
  const defines = new Map<string, Node[]>();
  let i = 0;
  const nodes = parseList(undefined);
  return { nodes, defines };

  /** Parse until {{ end }} / {{ else … }} (returned as terminator) or the end of input. */
  function parseList(opener: string | undefined): Node[] & { terminator?: RawAction } {
    const out: Node[] & { terminator?: RawAction } = [];
    while (i < pieces.length) {
      const p = pieces[i++]!;
      if (p.kind === 'text') {
        if (p.text) out.push({ kind: 'text', text: p.text });
        continue;
      }
      const [keyword] = p.body.split(/\s+/, 1);
      const rest = p.body.slice(keyword!.length).trim();
      switch (keyword) {
        case 'end':
        case 'else':
          if (!opener) throw new TemplateError(`${p.where}: {{ ${keyword} }} without an opening action`);
          out.terminator = p;
          return out;
        case 'if': {
          const branches: { pipe: Pipeline; body: Node[] }[] = [];
          let otherwise: Node[] | undefined;
          let cond = rest;
          for (;;) {
            const body = parseList('if');
            branches.push({ pipe: parsePipeline(tokenize(cond, p.where), p.where), body });
            const term = body.terminator;
            if (!term) throw new TemplateError(`${p.where}: {{ if }} without {{ end }}`);
            if (term.body === 'end') break;
            const elseRest = term.body.slice(4).trim();
            if (elseRest.startsWith('if ')) {
              cond = elseRest.slice(3);
              continue;
            }
            if (elseRest) throw new TemplateError(`${term.where}: '{{ else ${elseRest} }}' is outside the subset`);
            const elseBody = parseList('if');
            if (elseBody.terminator?.body !== 'end') throw new TemplateError(`${term.where}: {{ else }} without {{ end }}`);
            otherwise = elseBody;
            break;
          }
          out.push({ kind: 'if', branches, otherwise, where: p.where });
          break;
        }
        case 'with':
        case 'range': {
          const body = parseList(keyword);
          if (body.terminator?.body !== 'end') throw new TemplateError(`${p.where}: {{ ${keyword} }} needs {{ end }} (no else in the subset)`);
          const pipe = parsePipeline(tokenize(rest, p.where), p.where);
          if (keyword === 'with') {
            if (pipe.decl) throw new TemplateError(`${p.where}: variables in with are outside the subset`);
            out.push({ kind: 'with', pipe, body, where: p.where });
          } else {
            const vars = pipe.decl?.names ?? [];
            if (pipe.decl && pipe.decl.op !== ':=') throw new TemplateError(`${p.where}: range needs :=`);
            delete pipe.decl;
            out.push({ kind: 'range', pipe, vars, body, where: p.where });
          }
          break;
        }
        case 'define': {
          const m = /^"([^"]+)"$/.exec(rest);
          if (!m) throw new TemplateError(`${p.where}: define needs a quoted name`);
          const body = parseList('define');
          if (body.terminator?.body !== 'end') throw new TemplateError(`${p.where}: define without end`);
          defines.set(m[1]!, body);
          break;
        }
        case 'template':
        case 'block':
        case 'break':
        case 'continue':
          throw new TemplateError(`${p.where}: {{ ${keyword} }} is outside the subset (use include)`);
        default:
          out.push({ kind: 'action', pipe: parsePipeline(tokenize(p.body, p.where), p.where), where: p.where });
      }
    }
    if (opener) throw new TemplateError(`{{ ${opener} }} without {{ end }}`);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

class Scope {
  private readonly vars = new Map<string, Value>();
  constructor(private readonly parent?: Scope) {}
  declare(name: string, v: Value): void {
    this.vars.set(name, v);
  }
  assign(name: string, v: Value, where: string): void {
    if (this.vars.has(name)) this.vars.set(name, v);
    else if (this.parent) this.parent.assign(name, v, where);
    else throw new TemplateError(`${where}: undefined variable ${name}`);
  }
  get(name: string, where: string): Value {
    if (this.vars.has(name)) return this.vars.get(name);
    if (this.parent) return this.parent.get(name, where);
    throw new TemplateError(`${where}: undefined variable ${name}`);
  }
}

class Renderer {
  constructor(
    private readonly defines: Map<string, Node[]>,
    private readonly files: Map<string, Node[]>,
  ) {}

  renderNodes(nodes: Node[], dot: Value, scope: Scope): string {
    let out = '';
    for (const n of nodes) {
      switch (n.kind) {
        case 'text':
          out += n.text;
          break;
        case 'action': {
          const v = this.evalPipe(n.pipe, dot, scope, n.where);
          if (!n.pipe.decl) out += formatValue(v);
          break;
        }
        case 'if': {
          const branch = n.branches.find((b) => truthy(this.evalPipe(b.pipe, dot, new Scope(scope), n.where)));
          const body = branch ? branch.body : n.otherwise;
          if (body) out += this.renderNodes(body, dot, new Scope(scope));
          break;
        }
        case 'with': {
          const v = this.evalPipe(n.pipe, dot, scope, n.where);
          if (truthy(v)) out += this.renderNodes(n.body, v, new Scope(scope));
          break;
        }
        case 'range': {
          const v = this.evalPipe(n.pipe, dot, scope, n.where);
          const entries: [Value, Value][] = Array.isArray(v)
            ? v.map((x, i) => [new GoInt(i), x])
            : isMap(v)
              ? Object.keys(v)
                  .sort()
                  .map((k) => [k, v[k]])
              : v === undefined || v === null
                ? []
                : (() => {
                    throw new TemplateError(`${n.where}: range over ${typeof v}`);
                  })();
          for (const [k, x] of entries) {
            const s = new Scope(scope);
            if (n.vars.length === 1) s.declare(n.vars[0]!, x);
            if (n.vars.length === 2) {
              s.declare(n.vars[0]!, k);
              s.declare(n.vars[1]!, x);
            }
            out += this.renderNodes(n.body, x, s);
          }
          break;
        }
      }
    }
    return out;
  }

  private evalPipe(pipe: Pipeline, dot: Value, scope: Scope, where: string): Value {
    let v: Value = undefined;
    let first = true;
    for (const cmd of pipe.cmds) {
      v = this.evalCommand(cmd, dot, scope, where, first ? undefined : { value: v });
      first = false;
    }
    if (pipe.decl) {
      if (pipe.decl.names.length !== 1) throw new TemplateError(`${where}: multiple variables outside range`);
      if (pipe.decl.op === ':=') scope.declare(pipe.decl.names[0]!, v);
      else scope.assign(pipe.decl.names[0]!, v, where);
    }
    return v;
  }

  private evalCommand(cmd: Command, dot: Value, scope: Scope, where: string, piped: { value: Value } | undefined): Value {
    const head = cmd.args[0]!;
    const rest = cmd.args.slice(1);
    const args = () => {
      const a = rest.map((o) => this.evalOperand(o, dot, scope, where));
      if (piped) a.push(piped.value);
      return a;
    };
    if (head.kind === 'ident') return this.call(head.name, args(), scope, where);
    const v = this.evalOperand(head, dot, scope, where);
    if (typeof v === 'function') return (v as (...a: Value[]) => Value)(...args());
    if (rest.length > 0 || piped) throw new TemplateError(`${where}: can't give arguments to a non-function`);
    return v;
  }

  private evalOperand(o: Operand, dot: Value, scope: Scope, where: string): Value {
    switch (o.kind) {
      case 'literal':
        return o.value;
      case 'pipe':
        return this.evalPipe(o.pipe, dot, new Scope(scope), where);
      case 'ident':
        return this.call(o.name, [], scope, where);
      case 'field': {
        let v = o.base === 'dot' ? dot : scope.get(o.varName!, where);
        for (const name of o.path) {
          if (v instanceof HelmObject) v = v.get(name);
          else if (isMap(v)) v = v[name];
          else if (v === undefined || v === null) throw new TemplateError(`${where}: nil pointer evaluating .${name}`);
          else throw new TemplateError(`${where}: can't evaluate field ${name} in ${typeof v}`);
        }
        return v;
      }
    }
  }

  private call(name: string, a: Value[], scope: Scope, where: string): Value {
    // Sprig's string functions take interface{} and format it with %v (nil as "").
    const str = (v: Value): string => (typeof v === 'string' ? v : formatValue(v));
    const arity = (n: number) => {
      if (a.length !== n) throw new TemplateError(`${where}: ${name} takes ${n} arguments, got ${a.length}`);
    };
    switch (name) {
      case 'include': {
        arity(2);
        const tplName = a[0] as string;
        const body = this.defines.get(tplName) ?? this.files.get(tplName);
        if (!body) throw new TemplateError(`${where}: no template "${tplName}"`);
        // Like Go's {{ template }}: inside, both . and $ are the data passed in.
        const inner = new Scope();
        inner.declare('$', a[1]);
        return this.renderNodes(body, a[1], inner);
      }
      case 'default':
        arity(2);
        return truthy(a[1]) ? a[1] : a[0];
      case 'quote':
        return a.filter((x) => x !== undefined && x !== null).map((x) => goQuote(formatValue(x))).join(' ');
      case 'toYaml':
        arity(1);
        return toYaml(a[0]);
      case 'nindent':
        arity(2);
        return '\n' + indent(toInt(a[0]), str(a[1]));
      case 'indent':
        arity(2);
        return indent(toInt(a[0]), str(a[1]));
      case 'trunc': {
        arity(2);
        const n = toInt(a[0]);
        const s = str(a[1]);
        if (n < 0 && s.length + n > 0) return s.slice(s.length + n);
        return n >= 0 && s.length > n ? s.slice(0, n) : s;
      }
      case 'trimSuffix': {
        arity(2);
        const [suffix, s] = [str(a[0]), str(a[1])];
        return suffix && s.endsWith(suffix) ? s.slice(0, -suffix.length) : s;
      }
      case 'contains':
        arity(2);
        return str(a[1]).includes(str(a[0]));
      case 'replace':
        arity(3);
        return str(a[2]).replaceAll(str(a[0]), str(a[1]));
      case 'printf':
        return printf(str(a[0]), a.slice(1));
      case 'print':
        return sprint(a);
      case 'sha256sum':
        arity(1);
        return createHash('sha256').update(str(a[0])).digest('hex');
      case 'int':
      case 'int64':
        arity(1);
        return new GoInt(toInt(a[0]));
      case 'add':
        return new GoInt(a.reduce<number>((s, x) => s + toInt(x), 0));
      case 'mul':
        if (a.length < 1) throw new TemplateError(`${where}: mul needs arguments`);
        return new GoInt(a.slice(1).reduce<number>((s, x) => s * toInt(x), toInt(a[0])));
      case 'not':
        arity(1);
        return !truthy(a[0]);
      case 'and': {
        for (const x of a) if (!truthy(x)) return x;
        return a[a.length - 1];
      }
      case 'or': {
        for (const x of a) if (truthy(x)) return x;
        return a[a.length - 1];
      }
      case 'eq':
        arity(2);
        return compare(name, a[0], a[1]) === 0;
      case 'ne':
        arity(2);
        return compare(name, a[0], a[1]) !== 0;
      case 'gt':
        arity(2);
        return compare(name, a[0], a[1]) > 0;
      case 'lt':
        arity(2);
        return compare(name, a[0], a[1]) < 0;
      default:
        throw new TemplateError(`${where}: function "${name}" is outside the subset`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Charts

export interface ChartMeta {
  name: string;
  version: string;
  appVersion: string;
}

export interface LoadedChart {
  dir: string;
  meta: ChartMeta;
  defaults: Record<string, Value>;
  /** Template paths as helm names them ("<chart>/templates/…"), sorted. */
  templatePaths: string[];
  parsed: Map<string, Parsed>;
}

export function loadChart(dir: string): LoadedChart {
  const chartYaml = YAML.parse(fs.readFileSync(path.join(dir, 'Chart.yaml'), 'utf8')) as Record<string, string>;
  const meta: ChartMeta = { name: chartYaml.name!, version: chartYaml.version!, appVersion: String(chartYaml.appVersion) };
  const defaults = parseValues(fs.readFileSync(path.join(dir, 'values.yaml'), 'utf8'));
  const templatePaths: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.posix.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else templatePaths.push(`${meta.name}/${r}`);
    }
  };
  walk('templates');
  templatePaths.sort();
  const parsed = new Map<string, Parsed>();
  for (const p of templatePaths) {
    const src = fs.readFileSync(path.join(dir, p.slice(meta.name.length + 1)), 'utf8');
    parsed.set(p, parse(lex(src, p)));
  }
  return { dir, meta, defaults, templatePaths, parsed };
}

/**
 * A values file as Helm reads it: YAML 1.1 (so `on`, `yes`, `n` are booleans, also as keys) and
 * every number a float64.
 */
export function parseValues(text: string): Record<string, Value> {
  return (YAML.parse(text, { version: '1.1' }) ?? {}) as Record<string, Value>;
}

/** Helm's value coalescing: maps merge recursively, anything else replaces, null deletes. */
export function mergeValues(base: Record<string, Value>, over: Record<string, Value>): Record<string, Value> {
  const out: Record<string, Value> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else if (isMap(v) && isMap(out[k])) out[k] = mergeValues(out[k] as Record<string, Value>, v);
    else out[k] = v;
  }
  return out;
}

export interface RenderOptions {
  releaseName: string;
  namespace: string;
  /** Values on top of the chart's values.yaml (as `-f file` would give). */
  values?: Record<string, Value>;
}

export interface RenderedChart {
  /** Manifest text per template path, for templates that render to something (helm drops blank ones). */
  manifests: Map<string, string>;
  /** templates/NOTES.txt, rendered as `helm install` shows it. */
  notes: string;
}

export function renderChart(chart: LoadedChart, options: RenderOptions): RenderedChart {
  const values = mergeValues(chart.defaults, options.values ?? {});
  const defines = new Map<string, Node[]>();
  const files = new Map<string, Node[]>();
  for (const [p, parsed] of chart.parsed) {
    for (const [name, body] of parsed.defines) defines.set(name, body);
    files.set(p, parsed.nodes);
  }
  const renderer = new Renderer(defines, files);
  const root = (templateName: string) => ({
    Values: values,
    Chart: new HelmObject('Chart', { Name: chart.meta.name, Version: chart.meta.version, AppVersion: chart.meta.appVersion }),
    Release: new HelmObject('Release', { Name: options.releaseName, Namespace: options.namespace, Service: 'Helm', IsInstall: true, IsUpgrade: false, Revision: new GoInt(1) }),
    Template: new HelmObject('Template', { Name: templateName, BasePath: `${chart.meta.name}/templates` }),
    Files: new HelmObject('Files', {
      Get: (file: Value) => {
        const full = path.join(chart.dir, String(file));
        return fs.existsSync(full) ? fs.readFileSync(full, 'utf8') : '';
      },
    }),
  });
  const manifests = new Map<string, string>();
  let notes = '';
  for (const p of chart.templatePaths) {
    const base = path.posix.basename(p);
    if (base.startsWith('_')) continue;
    const data = root(p);
    const scope = new Scope();
    scope.declare('$', data);
    const text = renderer.renderNodes(files.get(p)!, data, scope);
    if (base === 'NOTES.txt') notes = text;
    else if (text.trim() !== '') manifests.set(p, text);
  }
  return { manifests, notes };
}

/** Documents of a rendered stream, parsed as Kubernetes reads YAML (1.1 booleans), empty ones dropped. */
export function parseManifests(text: string): Record<string, Value>[] {
  return YAML.parseAllDocuments(text, { version: '1.1' })
    .map((d) => {
      if (d.errors.length > 0) throw new Error(d.errors.map((e) => e.message).join('\n'));
      return d.toJS() as Record<string, Value> | null;
    })
    .filter((d): d is Record<string, Value> => d !== null && d !== undefined);
}

/** Split `helm template` output into documents per "# Source:" template path. */
export function splitHelmOutput(text: string): Map<string, Record<string, Value>[]> {
  const bySource = new Map<string, Record<string, Value>[]>();
  for (const chunk of text.split(/^---\s*$/m)) {
    const m = /^# Source: (.+)$/m.exec(chunk);
    if (!m) {
      if (chunk.replace(/^#.*$/gm, '').trim() !== '') throw new Error(`a document without a "# Source:" line: ${chunk.slice(0, 80)}`);
      continue;
    }
    const docs = parseManifests(chunk);
    bySource.set(m[1]!, [...(bySource.get(m[1]!) ?? []), ...docs]);
  }
  return bySource;
}
