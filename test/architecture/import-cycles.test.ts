import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { findCycles, type Graph } from './cycles.ts';
import { fileGraph, folderGraph, folderOf, parseStaticImports, readImports } from './import-graph.ts';

const srcRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

const graphOf = (edges: Record<string, string[]>): Graph => new Map(Object.entries(edges).map(([k, v]) => [k, new Set(v)]));

describe('the cycle detector', () => {
  it('finds no cycle in a graph without one', () => {
    assert.deepEqual(findCycles(graphOf({ a: ['b', 'c'], b: ['c'], c: [] })), []);
  });

  it('finds a two-node cycle, a longer one, and a self-import, each once', () => {
    const cycles = findCycles(graphOf({ a: ['b'], b: ['a', 'c'], c: ['d'], d: ['e'], e: ['c'], f: ['f'], g: ['a'] }));
    assert.deepEqual(cycles, [['a', 'b'], ['c', 'd', 'e'], ['f']]);
  });

  it('sees a folder cycle made of files that form no file cycle', () => {
    const files = graphOf({ 'x/one.ts': ['y/two.ts'], 'y/three.ts': ['x/four.ts'], 'y/two.ts': [], 'x/four.ts': [] });
    assert.deepEqual(findCycles(files), []);
    assert.deepEqual(findCycles(folderGraph(files)), [['x', 'y']]);
  });
});

describe('the import parser', () => {
  it('reads static imports and re-exports, marks type-only ones, and skips dynamic import()', () => {
    const text = [
      "import { a } from './a.ts';",
      "import type { B } from '../b/b.ts';",
      "import { type C } from './c.ts';",
      "import {\n  d,\n  e,\n} from 'pkg';",
      "export { f } from './f.ts';",
      "import './side-effect.ts';",
      "const later = await import('./lazy.ts');",
      "const s = \"import { x } from './in-a-string.ts'\";",
    ].join('\n');
    assert.deepEqual(parseStaticImports('t.ts', text), [
      { specifier: './a.ts', typeOnly: false },
      { specifier: '../b/b.ts', typeOnly: true },
      { specifier: './c.ts', typeOnly: true },
      { specifier: 'pkg', typeOnly: false },
      { specifier: './f.ts', typeOnly: false },
      { specifier: './side-effect.ts', typeOnly: false },
    ]);
  });
});

// Type-only imports count: erased at run time, they still tie two modules' designs together.
const imports = readImports(srcRoot);
const files = fileGraph(imports);

/** The area a file of src/ belongs to: its first folder ('runtime', 'mop', 'service', 'server', 'cli'). */
const areaOf = (file: string): string => file.split('/')[0]!;

/** Layers from the bottom up: each may import only those before it (folders that do not exist yet are fine). */
const forbidden: Record<string, string[]> = {
  runtime: ['mop', 'service', 'server', 'cli'],
  mop: ['service', 'server', 'cli'],
  service: ['server', 'cli'],
};

describe('the source tree (src/)', () => {
  it('is parsed: the runtime and mop files are found with their imports', () => {
    assert.ok(files.get('runtime/engine/scheduler.ts')?.size, 'scheduler.ts and its imports');
    assert.ok(files.has('mop/mop.ts'));
  });

  it('has no import cycle between files', () => {
    assert.deepEqual(findCycles(files), []);
  });

  it('has no import cycle between folders', () => {
    assert.deepEqual(findCycles(folderGraph(files)), []);
  });

  it('keeps the layers: runtime imports no mop/service/server/cli, mop no service/server/cli, service no server/cli', () => {
    const violations: string[] = [];
    for (const [file, targets] of files) {
      const banned = forbidden[areaOf(file)] ?? [];
      for (const t of targets) if (banned.includes(areaOf(t))) violations.push(`${file} -> ${t}`);
    }
    assert.deepEqual(violations, []);
  });

  it('keeps ONNX Runtime inside the runtime: nothing in mop/ imports onnxruntime-node', () => {
    const violations = [...imports].filter(([file, list]) => areaOf(file) === 'mop' && list.some((i) => i.specifier === 'onnxruntime-node')).map(([file]) => file);
    assert.deepEqual(violations, []);
  });

  it('loads the native CUDA backend only on demand: engine/ and device/ do not import cuda/ statically', () => {
    const violations = [...files].flatMap(([file, targets]) =>
      ['runtime/engine', 'runtime/device'].includes(folderOf(file)) ? [...targets].filter((t) => folderOf(t) === 'runtime/cuda').map((t) => `${file} -> ${t}`) : [],
    );
    assert.deepEqual(violations, []);
  });
});
