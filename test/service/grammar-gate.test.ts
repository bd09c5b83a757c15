/**
 * GrammarGate on its own, with a compile thread the test controls: what reaches the engine, what
 * is refused and why, and that the queue bound is the admission rule's.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QueueFullError } from '../../src/runtime/engine/scheduler-types.ts';
import { GrammarError, GrammarLimitError, type GrammarSpec } from '../../src/runtime/grammar/grammar-spec.ts';
import type { CompileOutcome, TimedGrammarCompiler } from '../../src/service/variants/grammar-compile-thread.ts';
import { GrammarGate } from '../../src/service/variants/grammar-gate.ts';

/** A compile thread whose compiles end when the test says (or at once with `outcome`). */
class ScriptedCompiler implements TimedGrammarCompiler {
  readonly compiled: GrammarSpec[] = [];
  readonly held: ((o: CompileOutcome) => void)[] = [];
  constructor(private readonly answer: CompileOutcome | 'hold' | Error) {}
  compile(spec: GrammarSpec): Promise<CompileOutcome> {
    this.compiled.push(spec);
    if (this.answer === 'hold') return new Promise((resolve) => this.held.push(resolve));
    return this.answer instanceof Error ? Promise.reject(this.answer) : Promise.resolve(this.answer);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function gate(compiler: TimedGrammarCompiler, engineChecks: GrammarSpec[], maxQueue = 64, lines: string[] = []) {
  return new GrammarGate({ variant: 'm', limits: { maxBytes: 100, compileTimeoutMs: 50 }, maxQueue, compiler, engineCheck: async (s) => void engineChecks.push(s), log: (l) => lines.push(l) });
}

const regex = (pattern: string): GrammarSpec => ({ kind: 'regex', pattern });

describe('GrammarGate', () => {
  it('sends a grammar to the engine only after it compiled in time, and once proven skips the compile thread', async () => {
    const compiler = new ScriptedCompiler('compiled');
    const engine: GrammarSpec[] = [];
    const g = gate(compiler, engine);
    await g.check(regex('a+'));
    await g.check(regex('a+'));
    assert.equal(compiler.compiled.length, 1);
    assert.equal(engine.length, 2);
  });

  it('refuses a grammar over the size limit before compiling it, counting UTF-8 bytes', async () => {
    const compiler = new ScriptedCompiler('compiled');
    const g = gate(compiler, []);
    await assert.rejects(g.check({ kind: 'choice', choices: ['é'.repeat(30), 'x'.repeat(41)] }), (e) => e instanceof GrammarLimitError && e.code === 'grammar_too_large' && /100/.test(e.message));
    assert.equal(compiler.compiled.length, 0);
    assert.equal(g.failureCounts().too_large, 1);
  });

  it('refuses a grammar that timed out, logs it, and never lets the engine compile it', async () => {
    const engine: GrammarSpec[] = [];
    const lines: string[] = [];
    const g = gate(new ScriptedCompiler('timed_out'), engine, 64, lines);
    await assert.rejects(g.check(regex('x')), (e) => e instanceof GrammarLimitError && e.code === 'grammar_too_complex' && /--grammar-compile-timeout-ms/.test(e.message));
    assert.equal(engine.length, 0);
    assert.equal(lines.length, 1);
    assert.equal(g.failureCounts().timeout, 1);
  });

  it('passes on an unusable grammar as a GrammarError and a failed thread as an error, each counted', async () => {
    await assert.rejects(gate(new ScriptedCompiler(new GrammarError('bad')), []).check(regex('(')), GrammarError);
    const failing = gate(new ScriptedCompiler(new Error('thread died')), []);
    await assert.rejects(failing.check(regex('(')), /thread died/);
    assert.equal(failing.failureCounts().error, 1);
  });

  it('holds one compiling and min(--max-queue, 8) waiting; the next is a QueueFullError', async () => {
    for (const [maxQueue, waiting] of [[2, 2], [64, 8]] as const) {
      const compiler = new ScriptedCompiler('hold');
      const g = gate(compiler, [], maxQueue);
      const accepted = Array.from({ length: waiting + 1 }, (_, i) => g.check(regex(`a${i}`)));
      await assert.rejects(g.check(regex('one too many')), QueueFullError);
      assert.equal(g.failureCounts().queue_full, 1);
      // One at a time: the next compile starts only when the previous one ended.
      for (let i = 0; i <= waiting; i++) {
        await new Promise((r) => setImmediate(r));
        assert.equal(compiler.held.length, i + 1);
        compiler.held[i]!('compiled');
      }
      await Promise.all(accepted);
      const again = g.check(regex('room again'));
      await new Promise((r) => setImmediate(r));
      compiler.held.at(-1)!('compiled');
      await again;
    }
  });
});
