import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import type { Graph } from './cycles.ts';

/** One static import or re-export of a source file. Dynamic `import()` is not one. */
export interface StaticImport {
  /** The specifier as written: './x.ts', '../engine/y.ts', 'onnxruntime-node'. */
  specifier: string;
  /** The imported file relative to the source root (posix separators), or null for a package. */
  file: string | null;
  /** `import type` / `export type`: erased at run time, but still a dependency between modules. */
  typeOnly: boolean;
}

/** Every .ts file under `root`, relative to it, posix separators, sorted. */
export function sourceFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(relative(root, path).split(sep).join('/'));
    }
  };
  walk(root);
  return out.sort();
}

/** The top-level static imports and re-exports of one file's text (parsed, not pattern-matched). */
export function parseStaticImports(fileName: string, text: string): { specifier: string; typeOnly: boolean }[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const found: { specifier: string; typeOnly: boolean }[] = [];
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement) && ts.isStringLiteral(statement.moduleSpecifier)) {
      const clause = statement.importClause;
      const bindings = clause?.namedBindings;
      const allNamedTypeOnly = !!bindings && ts.isNamedImports(bindings) && bindings.elements.length > 0 && bindings.elements.every((e) => e.isTypeOnly) && !clause?.name;
      found.push({ specifier: statement.moduleSpecifier.text, typeOnly: !!clause?.isTypeOnly || allNamedTypeOnly });
    } else if (ts.isExportDeclaration(statement) && statement.moduleSpecifier && ts.isStringLiteral(statement.moduleSpecifier)) {
      found.push({ specifier: statement.moduleSpecifier.text, typeOnly: statement.isTypeOnly });
    } else if (ts.isImportEqualsDeclaration(statement) && ts.isExternalModuleReference(statement.moduleReference) && ts.isStringLiteral(statement.moduleReference.expression)) {
      found.push({ specifier: statement.moduleReference.expression.text, typeOnly: statement.isTypeOnly });
    }
  }
  return found;
}

/** The file a relative specifier names, relative to `root`; null when it leaves the root or is a package. */
function resolveRelative(root: string, fromFile: string, specifier: string): string | null {
  if (!specifier.startsWith('.')) return null;
  const base = resolve(root, dirname(fromFile), specifier);
  const candidates = [base, base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')];
  const hit = candidates.find((c) => existsSync(c) && statSync(c).isFile());
  const path = relative(root, hit ?? base);
  if (path.startsWith('..')) return null;
  return path.split(sep).join('/');
}

/** Each file under `root` with its static imports, resolved. */
export function readImports(root: string): Map<string, StaticImport[]> {
  const imports = new Map<string, StaticImport[]>();
  for (const file of sourceFiles(root)) {
    const parsed = parseStaticImports(file, readFileSync(join(root, file), 'utf8'));
    imports.set(
      file,
      parsed.map((p) => ({ ...p, file: resolveRelative(root, file, p.specifier) })),
    );
  }
  return imports;
}

/** File → files it imports (within the root). */
export function fileGraph(imports: ReadonlyMap<string, readonly StaticImport[]>): Graph {
  const graph = new Map<string, Set<string>>();
  for (const [file, list] of imports) graph.set(file, new Set(list.flatMap((i) => (i.file ? [i.file] : []))));
  return graph;
}

/** The folder of a file relative to the root: 'runtime/engine' for 'runtime/engine/x.ts'. */
export function folderOf(file: string): string {
  const i = file.lastIndexOf('/');
  return i < 0 ? '.' : file.slice(0, i);
}

/** Folder → folders its files import; imports within one folder are not edges. */
export function folderGraph(files: Graph): Graph {
  const graph = new Map<string, Set<string>>();
  for (const [file, targets] of files) {
    const from = folderOf(file);
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const t of targets) if (folderOf(t) !== from) edges.add(folderOf(t));
  }
  return graph;
}
