/**
 * Grammar specs → compiled xgrammar grammars for one model's vocabulary, and a matcher per
 * sequence. Lives in the engine worker: compiling (a token-mask cache over the whole vocabulary)
 * and masking are CPU work that must not run on the thread answering HTTP.
 *
 * Client grammars can be wrong, and a wrong one makes the WebAssembly module abort. So each new
 * grammar is first compiled in a probe instance with an empty vocabulary (cheap: it only parses
 * and converts); an abort there is turned into a GrammarError carrying the module's own reason,
 * and the probe instance is replaced. Only a grammar the probe accepted reaches the serving
 * instance, whose compiled grammars and matchers live on; should it abort anyway, it is replaced
 * too (sequences already running keep their own matchers). Compiles are serialised and cached (a
 * small LRU keyed by the canonical spec).
 */
import type { CompiledGrammar, GrammarCompiler as XgCompiler } from '@mlc-ai/web-xgrammar';
import { GrammarConstraint } from './grammar-constraint.ts';
import { GrammarError, type GrammarSpec, grammarKey, type JsonFormat } from './grammar-spec.ts';
import type { GrammarVocabulary } from './vocabulary.ts';
import { loadXgrammar, type XgrammarInstance } from './xgrammar-module.ts';

/** One xgrammar instance with a compiler over a vocabulary. */
interface Backend {
  xg: XgrammarInstance;
  compiler: XgCompiler;
}

export interface GrammarCompilerOptions {
  /** Compiled grammars kept for reuse (least recently used goes first). Default 32. */
  cacheSize?: number;
}

export class GrammarCompiler {
  private serving: Promise<Backend> | undefined;
  private probe: Promise<Backend> | undefined;
  private readonly cache = new Map<string, CompiledGrammar>();
  private readonly cacheSize: number;
  /** Compiles run one at a time: the module is not re-entrant, and a replaced instance must not be in use. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly vocabulary: GrammarVocabulary,
    options: GrammarCompilerOptions = {},
  ) {
    this.cacheSize = Math.max(1, options.cacheSize ?? 32);
  }

  get vocabSize(): number {
    return this.vocabulary.encodedVocab.length;
  }

  /** The compiled grammar of a spec (from the cache when it was compiled before); GrammarError if unusable. */
  compile(spec: GrammarSpec): Promise<CompiledGrammar> {
    return this.serialised(() => this.compileNow(spec));
  }

  /** A matcher for one sequence, in its start state (made by the instance that compiled its grammar). */
  constraint(spec: GrammarSpec): Promise<GrammarConstraint> {
    return this.serialised(async () => {
      const compiled = await this.compileNow(spec);
      const backend = await this.servingBackend();
      return new GrammarConstraint(await backend.xg.api.GrammarMatcher.createGrammarMatcher(compiled), this.vocabSize);
    });
  }

  /** Runs `work` after every earlier call's work: no instance is replaced while another call uses it. */
  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Compiles a spec and checks that the model can start it (some token is allowed first), so a
   * request is refused before it streams anything.
   */
  async check(spec: GrammarSpec): Promise<void> {
    const c = await this.constraint(spec);
    try {
      c.mask();
    } finally {
      c.release();
    }
  }

  private async compileNow(spec: GrammarSpec): Promise<CompiledGrammar> {
    const key = grammarKey(spec);
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const effective = this.fitToVocabulary(spec);
    // Parse and convert where an abort costs nothing; then compile for the vocabulary.
    (await this.attempt('probe', effective)).dispose();
    const compiled = await this.attempt('serving', effective);
    this.cache.set(key, compiled);
    if (this.cache.size > this.cacheSize) {
      const [oldest, evicted] = this.cache.entries().next().value!;
      this.cache.delete(oldest);
      // Matchers made from it hold their own reference inside the module.
      evicted.dispose();
    }
    return compiled;
  }

  /** Compile in one instance; an abort replaces that instance and becomes a GrammarError with its reason. */
  private async attempt(which: 'probe' | 'serving', spec: GrammarSpec): Promise<CompiledGrammar> {
    const backend = await (which === 'probe' ? this.probeBackend() : this.servingBackend());
    try {
      return await compileSpec(backend, spec);
    } catch (e) {
      const reason = backend.xg.takeFatal();
      if (which === 'probe') this.probe = undefined;
      else {
        this.serving = undefined;
        // Its compiled grammars belong to the replaced instance.
        this.cache.clear();
      }
      if (e instanceof GrammarError) throw e;
      throw new GrammarError(reason ?? (e instanceof Error ? e.message : String(e)));
    }
  }

  /**
   * Whitespace the model cannot write is not asked of it: JSON separators lose their spaces when
   * no token is a lone space, and an indented layout needs a newline token.
   */
  private fitToVocabulary(spec: GrammarSpec): GrammarSpec {
    if (spec.kind !== 'json') return spec;
    const format: JsonFormat = { ...spec.format };
    if (format.indent !== undefined && !(this.vocabulary.producesAlone('\n') && this.vocabulary.producesAlone(' '))) {
      throw new GrammarError("this model's vocabulary has no newline or space token, so it cannot write indented JSON: ask for it on one line");
    }
    const separators = format.separators ?? defaultSeparators(format);
    if (!this.vocabulary.producesAlone(' ')) format.separators = [separators[0].replaceAll(' ', ''), separators[1].replaceAll(' ', '')];
    else format.separators = separators;
    return { ...spec, format };
  }

  private servingBackend(): Promise<Backend> {
    return (this.serving ??= backendFor(this.vocabulary.encodedVocab, this.vocabulary));
  }

  private probeBackend(): Promise<Backend> {
    return (this.probe ??= backendFor([], undefined));
  }
}

/** xgrammar's own defaults (Python's json.dumps): `", "` on one line, `","` when indented. */
function defaultSeparators(format: JsonFormat): [string, string] {
  return format.indent === undefined ? [', ', ': '] : [',', ': '];
}

async function backendFor(encodedVocab: string[], vocabulary: GrammarVocabulary | undefined): Promise<Backend> {
  const xg = loadXgrammar();
  const info = await xg.api.TokenizerInfo.createTokenizerInfo(encodedVocab, vocabulary?.vocabType ?? 'byte_level', false, encodedVocab.length, vocabulary?.stopTokenIds);
  // The compiler keeps what it needs of the tokenizer info; our LRU is the cache.
  const compiler = await xg.api.GrammarCompiler.createGrammarCompiler(info, false);
  return { xg, compiler };
}

async function compileSpec({ xg, compiler }: Backend, spec: GrammarSpec): Promise<CompiledGrammar> {
  switch (spec.kind) {
    case 'json': {
      const f = spec.format ?? {};
      return compiler.compileJSONSchema(spec.schema, false, f.indent ?? -1, f.separators ?? defaultSeparators(f), f.strict ?? true);
    }
    case 'ebnf':
      return compiler.compileGrammar(spec.grammar);
    case 'regex':
      return compiler.compileStructuralTag({ type: 'structural_tag', format: { type: 'regex', pattern: spec.pattern } });
    case 'choice': {
      const elements = spec.choices.map((value) => ({ type: 'const_string' as const, value }));
      return compiler.compileStructuralTag({ type: 'structural_tag', format: elements.length === 1 ? elements[0]! : { type: 'or', elements } });
    }
    case 'sequence': {
      const elements = [];
      for (const part of spec.parts) {
        if ('text' in part) elements.push({ type: 'const_string' as const, value: part.text });
        else {
          // The compact layout of the JSON part, as for a json spec.
          const grammar = await xg.api.Grammar.fromJSONSchema(part.json, false, -1, [', ', ': '], true);
          elements.push({ type: 'grammar' as const, grammar: grammar.toString() });
          grammar.dispose();
        }
      }
      return compiler.compileStructuralTag({ type: 'structural_tag', format: { type: 'sequence', elements } });
    }
  }
}
