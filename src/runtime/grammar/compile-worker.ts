/**
 * A variant's disposable grammar compile thread: it compiles each new client grammar exactly as
 * the engine worker would (same vocabulary, same GrammarCompiler check), so the main thread can
 * time it and terminate this thread when a grammar takes too long. Nothing else lives here, so
 * terminating it loses nothing but its warm compiler.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createTokenizer } from '../tokenizer/create.ts';
import type { CompileWorkerInit, FromCompileWorker, ToCompileWorker } from './compile-protocol.ts';
import { GrammarCompiler } from './grammar-compiler.ts';
import { GrammarError } from './grammar-spec.ts';
import { grammarVocabulary } from './vocabulary.ts';

const port = parentPort!;
const init = workerData as CompileWorkerInit;
const post = (m: FromCompileWorker) => port.postMessage(m);

// One entry: grammars are compiled here once, to be timed; the engine keeps the compiled ones.
const compiler = new GrammarCompiler(grammarVocabulary(createTokenizer(init.tokenizer), init.vocabSize), { cacheSize: 1 });

async function check({ id, spec }: ToCompileWorker): Promise<void> {
  try {
    await compiler.check(spec);
    post({ type: 'checked', id });
  } catch (e) {
    post({ type: 'failed', id, grammar: e instanceof GrammarError, message: e instanceof Error ? e.message : String(e) });
  }
}

async function main(): Promise<void> {
  // Build the vocabulary's tokenizer info and the xgrammar instance before the first timed compile.
  await compiler.compile({ kind: 'ebnf', grammar: 'root ::= "a"' }).catch(() => undefined);
  port.on('message', (m: ToCompileWorker) => void check(m));
  post({ type: 'ready' });
}

void main();
