import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Start a worker thread from a module next to the caller. The built server runs the compiled
 * `.js` module as it is; the TypeScript sources (tests, `node --import tsx`) need tsx registered
 * inside the worker first, because loader hooks given to the parent do not reach worker threads
 * on Node 20.
 */
export function startWorkerThread(moduleUrl: URL, options: WorkerOptions = {}): Worker {
  if (!moduleUrl.pathname.endsWith('.ts')) return new Worker(moduleUrl, options);
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(moduleUrl.href)}); })`;
  return new Worker(bootstrap, { ...options, eval: true });
}

/** The sibling module `name` (without extension) of `importMetaUrl`, as the same kind of file. */
export function siblingModule(importMetaUrl: string, name: string): URL {
  return new URL(`./${name}${importMetaUrl.endsWith('.ts') ? '.ts' : '.js'}`, importMetaUrl);
}
