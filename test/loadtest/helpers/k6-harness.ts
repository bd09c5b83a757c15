/**
 * There is no k6 binary here, so the k6 scripts are checked two ways:
 *
 * - `bundleK6Script`: esbuild bundles the script with every `k6` and `k6/*` import left external,
 *   which fails on any syntax error or unresolvable local import;
 * - `loadK6Script`: esbuild bundles it with small stand-ins for the k6 modules, and Node evaluates
 *   the result with a chosen `__ENV`, so a test can read the `options` it exports, the env
 *   variables it reads, and what its default function sends through a fake `http.post`.
 */
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type BuildResult, type Plugin } from 'esbuild';

export async function bundleK6Script(file: string): Promise<BuildResult<{ write: false; metafile: true }>> {
  return build({
    entryPoints: [file],
    bundle: true,
    write: false,
    metafile: true,
    format: 'esm',
    platform: 'neutral',
    external: ['k6', 'k6/*'],
    logLevel: 'silent',
  });
}

const STUBS: Record<string, string> = {
  k6: `
    export function check(value, sets, tags) { return globalThis.__k6.check(value, sets, tags); }
    export function sleep(s) { globalThis.__k6.sleeps.push(s); }
    export default { check, sleep };`,
  'k6/http': `export default { post: (url, body, params) => globalThis.__k6.post(url, body, params) };`,
  'k6/execution': `
    export default {
      get scenario() { return globalThis.__k6.scenario; },
      test: { abort(msg) { throw new Error('exec.test.abort: ' + msg); } },
    };`,
  'k6/data': `
    export class SharedArray {
      constructor(name, fn) {
        const data = fn();
        if (!Array.isArray(data)) throw new Error('SharedArray callback must return an array');
        return Object.freeze(data.slice());
      }
    }`,
  'k6/metrics': `
    function metric(type) {
      return class {
        constructor(name, isTime) { this.name = name; globalThis.__k6.metrics.push({ type, name, isTime: !!isTime }); }
        add(value, tags) { globalThis.__k6.samples.push({ name: this.name, value, tags: tags || {} }); }
      };
    }
    export const Trend = metric('trend');
    export const Rate = metric('rate');
    export const Counter = metric('counter');
    export const Gauge = metric('gauge');`,
};

const k6StubPlugin: Plugin = {
  name: 'k6-stubs',
  setup(b) {
    b.onResolve({ filter: /^k6(\/.*)?$/ }, (args) => ({ path: args.path, namespace: 'k6-stub' }));
    b.onLoad({ filter: /.*/, namespace: 'k6-stub' }, (args) => {
      const contents = STUBS[args.path];
      if (contents === undefined) return { errors: [{ text: `no stand-in for ${args.path}` }] };
      return { contents, loader: 'js' };
    });
  },
};

export interface FakeResponse {
  status: number;
  body?: string;
  error_code?: number;
  timings?: { duration: number; waiting: number };
}

export interface K6Call {
  url: string;
  body: Record<string, unknown>;
  params: { timeout?: string; tags?: Record<string, string>; headers?: Record<string, string> };
}

export interface K6Runtime {
  /** Env variables the script read (at init and in the calls made so far). */
  envRead: Set<string>;
  options: {
    scenarios: Record<string, Record<string, unknown>>;
    thresholds: Record<string, string[]>;
    tags?: Record<string, string>;
    summaryTrendStats?: string[];
  };
  metrics: { type: string; name: string; isTime: boolean }[];
  samples: { name: string; value: number | boolean; tags: Record<string, string> }[];
  checks: Record<string, boolean>[];
  calls: K6Call[];
  sleeps: number[];
  /** Runs the default function as iteration `iterationInTest`, answering http.post with `respond`. */
  iterate(iterationInTest: number, respond?: (call: K6Call) => FakeResponse): void;
}

let bundleCache: { file: string; out: string } | null = null;
let loads = 0;

/** Bundles `file` with the k6 stand-ins and evaluates it with `env` as `__ENV`. */
export async function loadK6Script(file: string, env: Record<string, string> = {}): Promise<K6Runtime> {
  if (bundleCache?.file !== file) {
    const result = await build({
      entryPoints: [file],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'neutral',
      plugins: [k6StubPlugin],
      logLevel: 'silent',
    });
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'k6-bundle-'));
    const out = path.join(dir, 'script.mjs');
    await fs.writeFile(out, result.outputFiles[0]!.text);
    bundleCache = { file, out };
  }
  const scriptDir = path.dirname(file);
  const envRead = new Set<string>();
  const rt = {
    envRead,
    metrics: [] as K6Runtime['metrics'],
    samples: [] as K6Runtime['samples'],
    checks: [] as K6Runtime['checks'],
    calls: [] as K6Call[],
    sleeps: [] as number[],
    scenario: { iterationInTest: 0 },
    respond: (_call: K6Call): FakeResponse => ({ status: 200, body: '{"choices":[]}' }),
  };
  const k6 = {
    metrics: rt.metrics,
    samples: rt.samples,
    sleeps: rt.sleeps,
    get scenario() {
      return rt.scenario;
    },
    check(value: unknown, sets: Record<string, (v: unknown) => boolean>): boolean {
      const results: Record<string, boolean> = {};
      for (const [name, fn] of Object.entries(sets)) results[name] = Boolean(fn(value));
      rt.checks.push(results);
      return Object.values(results).every(Boolean);
    },
    post(url: string, body: string, params: K6Call['params']): FakeResponse {
      const call = { url, body: JSON.parse(body) as Record<string, unknown>, params };
      rt.calls.push(call);
      const res = rt.respond(call);
      return { timings: { duration: 12, waiting: 3 }, ...res };
    },
  };
  const g = globalThis as Record<string, unknown>;
  g.__k6 = k6;
  g.__ENV = new Proxy(env, {
    get(target, prop) {
      if (typeof prop === 'string') envRead.add(prop);
      return typeof prop === 'string' ? target[prop] : undefined;
    },
  });
  g.open = (p: string): string => {
    const full = path.isAbsolute(p) ? p : path.join(scriptDir, p);
    return readFileSync(full, 'utf8');
  };
  const mod = (await import(`${pathToFileURL(bundleCache.out).href}?load=${++loads}`)) as {
    options: K6Runtime['options'];
    default: () => void;
  };
  return {
    envRead,
    options: mod.options,
    metrics: rt.metrics,
    samples: rt.samples,
    checks: rt.checks,
    calls: rt.calls,
    sleeps: rt.sleeps,
    iterate(i, respond) {
      g.__k6 = k6;
      rt.scenario = { iterationInTest: i };
      if (respond) rt.respond = respond;
      mod.default();
    },
  };
}
