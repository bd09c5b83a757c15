/**
 * Loads xgrammar (the grammar engine vLLM and SGLang use) from its npm build,
 * `@mlc-ai/web-xgrammar`. Its `lib/index.js` is a UMD bundle inside a package marked
 * `"type": "module"`: Node would load it as ESM, where the bundle's emscripten part finds no
 * `require` or `__filename` and its exports go to `globalThis.xgrammar`. So the file is read and
 * run here as the CommonJS script it is, with a `require` made by createRequire for the file and
 * its real `__filename`; the UMD header then takes the CommonJS branch and fills our `exports`.
 *
 * Every call builds a new, independent instance (its own WebAssembly memory): an emscripten abort
 * (`RuntimeError: Aborted()`) leaves the instance it happened in suspect, and the caller replaces
 * it instead of serving from it. The bundle writes the reason for an abort (`[FATAL] … EBNF parser
 * error …`) with `console.error` before throwing an error without it: each instance gets its own
 * `console`, which keeps that line so the caller can say what was wrong.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as xgrammar from '@mlc-ai/web-xgrammar';

/** The package's public classes. */
export type XgrammarApi = Pick<typeof xgrammar, 'CompiledGrammar' | 'Grammar' | 'GrammarCompiler' | 'GrammarMatcher' | 'TokenizerInfo' | 'Testings'>;

export interface XgrammarInstance {
  readonly api: XgrammarApi;
  /**
   * The message of the last `[FATAL]` line the instance wrote (file and line prefix removed), then
   * forgotten; undefined if it wrote none since the last call.
   */
  takeFatal(): string | undefined;
}

const require = createRequire(import.meta.url);
/** The bundle's path, resolved through the package's `main`. */
const bundlePath = require.resolve('@mlc-ai/web-xgrammar');
let bundleSource: string | undefined;

/** Where `[FATAL] /path/file.cc:123: ` ends: what follows is the reason. */
const FATAL_PREFIX = /^\[FATAL\][^:]*:\d+:\s*/;

/** A new xgrammar instance; its WebAssembly starts on the first call into it. */
export function loadXgrammar(): XgrammarInstance {
  bundleSource ??= readFileSync(bundlePath, 'utf8');
  let fatal: string | undefined;
  const sink = (...args: unknown[]): void => {
    const line = args.map(String).join(' ');
    if (line.startsWith('[FATAL]')) fatal = line.replace(FATAL_PREFIX, '').trim();
  };
  // Only what the bundle writes goes to this console: its log lines are the module's diagnostics,
  // and the fatal ones are reported to the client through takeFatal.
  const quietConsole = { ...console, log: () => undefined, warn: sink, error: sink };
  const module = { exports: {} as Record<string, unknown> };
  const run = new Function('exports', 'module', 'require', '__filename', '__dirname', 'console', bundleSource) as (...args: unknown[]) => void;
  run.call(undefined, module.exports, module, createRequire(bundlePath), bundlePath, bundlePath.replace(/[/\\][^/\\]*$/, ''), quietConsole);
  const api = module.exports as unknown as XgrammarApi;
  if (typeof api.GrammarCompiler?.createGrammarCompiler !== 'function') throw new Error(`${bundlePath} did not export xgrammar's classes (an incompatible @mlc-ai/web-xgrammar version?)`);
  return {
    api,
    takeFatal() {
      const out = fatal;
      fatal = undefined;
      return out;
    },
  };
}
