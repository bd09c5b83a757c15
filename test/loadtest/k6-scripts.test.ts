import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { optionsFromArgs } from '../../loadtest/cli.ts';
import { buildRequestBody } from '../../loadtest/load-generator.ts';
import { DEFAULTS, OPTION_TABLE, parseDurationSec, resolveLoadOptions } from '../../loadtest/options.ts';
import { loadPrompts } from '../../loadtest/prompts.ts';
import { bundleK6Script, loadK6Script, type FakeResponse } from './helpers/k6-harness.ts';

const K6_DIR = path.resolve('loadtest/k6');
const SCRIPT = path.join(K6_DIR, 'completions.js');

async function k6Scripts(): Promise<string[]> {
  return (await fs.readdir(K6_DIR)).filter((f) => f.endsWith('.js')).map((f) => path.join(K6_DIR, f));
}

const sse = (...events: unknown[]): string => events.map((e) => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}\n\n`).join('');
const okJson: FakeResponse = { status: 200, body: JSON.stringify({ choices: [{ text: 'abc' }], usage: { completion_tokens: 7 } }) };

describe('k6 scripts', () => {
  it('bundle with esbuild (k6 modules external), so a syntax error fails CI', async () => {
    const scripts = await k6Scripts();
    assert.ok(scripts.length >= 1);
    for (const file of scripts) {
      const r = await bundleK6Script(file);
      assert.deepEqual(r.errors, [], file);
      const imports = Object.values(r.metafile.outputs).flatMap((o) => o.imports.map((i) => i.path));
      for (const m of ['k6/http', 'k6', 'k6/metrics', 'k6/data']) assert.ok(imports.includes(m), `${file} imports ${m}`);
    }
  });

  it('a syntax error is caught by the bundling check', async (t) => {
    const dir = await fs.mkdtemp(path.join((await import('node:os')).tmpdir(), 'k6-bad-'));
    t.after(() => fs.rm(dir, { recursive: true, force: true }));
    const bad = path.join(dir, 'bad.js');
    await fs.writeFile(bad, "import http from 'k6/http';\nexport default function () { http.post('x', { ; }\n");
    await assert.rejects(bundleK6Script(bad), /Expected|Unexpected/);
  });

  it('declares an open (constant-arrival-rate) and a closed (constant-vus) scenario, chosen by SCENARIO', async () => {
    const text = await fs.readFile(SCRIPT, 'utf8');
    assert.match(text, /executor: 'constant-arrival-rate'/);
    assert.match(text, /executor: 'constant-vus'/);

    const open = await loadK6Script(SCRIPT, { SCENARIO: 'open', RATE: '5', VUS: '2', MAX_VUS: '16', DURATION: '20s' });
    assert.deepEqual(Object.keys(open.options.scenarios), ['open']);
    assert.deepEqual(open.options.scenarios.open, {
      executor: 'constant-arrival-rate',
      rate: 5,
      timeUnit: '1s',
      duration: '20000ms',
      preAllocatedVUs: 2,
      maxVUs: 16,
      gracefulStop: '30000ms',
    });

    const closed = await loadK6Script(SCRIPT, { SCENARIO: 'closed', VUS: '8', DURATION: '1m' });
    assert.deepEqual(closed.options.scenarios, {
      closed: { executor: 'constant-vus', vus: 8, duration: '60000ms', gracefulStop: '30000ms' },
    });

    const frac = await loadK6Script(SCRIPT, { SCENARIO: 'open', RATE: '0.5' });
    assert.equal(frac.options.scenarios.open!.rate, 500);
    assert.equal(frac.options.scenarios.open!.timeUnit, '1000s', 'a fractional rate is expressed per 1000 s (k6 wants an integer)');

    await assert.rejects(loadK6Script(SCRIPT, { SCENARIO: 'ramping' }), /SCENARIO must be open or closed/);
  });

  it('declares thresholds on p95 latency and error rate, per model too, and tags requests with their model', async () => {
    const rt = await loadK6Script(SCRIPT, { MODEL: 'dense,mop-0.4', P95_MS: '2500', MAX_ERROR_RATE: '0.05' });
    assert.deepEqual(rt.options.thresholds, {
      completion_e2e_ms: ['p(95)<2500'],
      completion_errors: ['rate<0.05'],
      'completion_e2e_ms{model:dense}': ['p(95)<2500'],
      'completion_errors{model:dense}': ['rate<0.05'],
      'completion_e2e_ms{model:mop-0.4}': ['p(95)<2500'],
      'completion_errors{model:mop-0.4}': ['rate<0.05'],
    });
    assert.ok(rt.options.summaryTrendStats?.includes('p(99)'));
    const names = rt.metrics.map((m) => `${m.type}:${m.name}`);
    for (const m of ['trend:completion_e2e_ms', 'rate:completion_errors', 'counter:completion_tokens', 'counter:completion_error_kinds']) {
      assert.ok(names.includes(m), m);
    }
    rt.iterate(0, () => okJson);
    rt.iterate(1, () => okJson);
    assert.deepEqual(
      rt.calls.map((c) => c.params.tags),
      [{ model: 'dense' }, { model: 'mop-0.4' }],
    );
    const e2e = rt.samples.filter((s) => s.name === 'completion_e2e_ms');
    assert.deepEqual(
      e2e.map((s) => s.tags.model),
      ['dense', 'mop-0.4'],
    );
  });

  it('reads exactly the environment variables the option table maps, with the same defaults as the Node generator', async () => {
    const text = await fs.readFile(SCRIPT, 'utf8');
    const rt = await loadK6Script(SCRIPT, {});
    const tableEnv = new Set(OPTION_TABLE.flatMap((s) => (s.env ? [s.env] : [])));
    assert.deepEqual([...rt.envRead].sort(), [...tableEnv].sort(), 'env variables read by the k6 script vs OPTION_TABLE');

    // The literal defaults in the script are the table's...
    for (const spec of OPTION_TABLE) {
      if (!spec.env) continue;
      const m = new RegExp(`\\w+\\('${spec.env}', ('[^']*'|String\\(\\w+\\))`).exec(text);
      assert.ok(m, `the script reads ${spec.env} through a defaulting helper`);
      const literal = m[1]!.startsWith("'") ? m[1]!.slice(1, -1) : null;
      assert.equal(literal, spec.k6Default, `default of ${spec.env}`);
    }
    // ...and the table's are the Node generator's.
    for (const spec of OPTION_TABLE) {
      if (spec.k6Default === null || spec.key === 'url' || spec.key === 'promptsFile') continue;
      const node = DEFAULTS[spec.key as Exclude<typeof spec.key, 'url'>];
      let k6: unknown;
      if (spec.key === 'durationSec' || spec.key === 'gracefulStopSec' || spec.key === 'timeoutSec') k6 = parseDurationSec(spec.k6Default);
      else if (spec.key === 'model') k6 = spec.k6Default === '' ? [] : spec.k6Default.split(',');
      else if (spec.key === 'extraBody') k6 = JSON.parse(spec.k6Default);
      else if (spec.key === 'apiKey') k6 = spec.k6Default === '' ? undefined : spec.k6Default;
      else if (spec.type === 'boolean') k6 = spec.k6Default === 'true';
      else if (typeof node === 'number') k6 = Number(spec.k6Default);
      else k6 = spec.k6Default;
      assert.deepEqual(k6, node, `default of ${spec.key} (${spec.env})`);
    }
    assert.equal(path.resolve(K6_DIR, OPTION_TABLE.find((s) => s.key === 'promptsFile')!.k6Default!), DEFAULTS.promptsFile);

    // With no env at all, the first request is the Node generator's first request.
    rt.iterate(0, () => okJson);
    const prompts = await loadPrompts(DEFAULTS.promptsFile);
    const node = resolveLoadOptions({ url: 'http://127.0.0.1:8080' });
    assert.equal(rt.calls[0]!.url, node.endpoint);
    assert.deepEqual(rt.calls[0]!.body, buildRequestBody(node, prompts, 0));
    assert.equal(rt.calls[0]!.params.timeout, `${DEFAULTS.timeoutSec * 1000}ms`);
    assert.deepEqual(rt.options.scenarios, {
      closed: { executor: 'constant-vus', vus: DEFAULTS.concurrency, duration: `${DEFAULTS.durationSec * 1000}ms`, gracefulStop: `${DEFAULTS.gracefulStopSec * 1000}ms` },
    });
  });

  it('names its options after the CLI flags: every env variable has a flag and the same request body follows from both', async () => {
    const env: Record<string, string> = {
      MODEL: 'dense,mop-0.4,mop-0.6',
      STREAM: 'true',
      MAX_TOKENS: '12',
      TEMPERATURE: '0.7',
      IGNORE_EOS: 'true',
      EXTRA_BODY: '{"top_p":0.9,"seed":3}',
      PROMPT_ORDER: 'random',
      SEED: '42',
      TIMEOUT: '1500ms',
      SHARED_PREFIX_WORDS: '40',
    };
    const rt = await loadK6Script(SCRIPT, env);
    const argv: string[] = [];
    for (const [name, value] of Object.entries(env)) {
      const spec = OPTION_TABLE.find((s) => s.env === name);
      assert.ok(spec, `${name} has a row in OPTION_TABLE`);
      if (spec.type === 'boolean') {
        if ((value === 'true') !== Boolean(spec.negate)) argv.push(`--${spec.flag}`);
      } else {
        argv.push(`--${spec.flag}`, value);
      }
    }
    const node = resolveLoadOptions(optionsFromArgs(argv).load);
    const prompts = await loadPrompts(node.promptsFile);
    const seen = new Set<unknown>();
    for (let i = 0; i < 12; i++) {
      rt.iterate(i, () => okJson);
      assert.deepEqual(rt.calls[i]!.body, buildRequestBody(node, prompts, i), `request ${i}`);
      seen.add(rt.calls[i]!.body.prompt);
    }
    assert.ok(seen.size > 3, 'random order draws different prompts');
    assert.equal(rt.calls[0]!.params.timeout, `${node.timeoutSec * 1000}ms`);
    assert.equal(rt.calls[0]!.params.headers?.Accept, 'text/event-stream');
  });

  it('refuses a non-loopback BASE_URL before sending anything', async () => {
    for (const url of ['http://10.0.0.1:8080', 'http://example.com', 'http://127.0.0.1@evil.example', 'http://0.0.0.0:8080']) {
      await assert.rejects(loadK6Script(SCRIPT, { BASE_URL: url }), /only loopback targets/, url);
    }
    for (const url of ['http://127.0.0.1:8080', 'http://localhost:3000/', 'http://[::1]:8080', 'http://127.0.0.1:8080/v1/completions']) {
      const rt = await loadK6Script(SCRIPT, { BASE_URL: url });
      rt.iterate(0, () => okJson);
      assert.match(rt.calls[0]!.url, /^http:\/\/[^/]+\/v1\/completions$/, url);
    }
  });

  it('counts errors by kind as the Node generator names them, and reads streams to [DONE]', async () => {
    const rt = await loadK6Script(SCRIPT, { STREAM: 'true', MODEL: 'm' });
    const usage = { choices: [], usage: { completion_tokens: 5 } };
    const tok = (t: string): unknown => ({ choices: [{ text: t }] });
    const answers: FakeResponse[] = [
      { status: 200, body: sse(tok(''), tok('a'), tok('b'), usage, '[DONE]') },
      { status: 500, body: '{"error":{"message":"boom"}}' },
      { status: 429, body: '{}' },
      { status: 0, error_code: 1050 },
      { status: 0, error_code: 1211 },
      { status: 200, body: sse(tok('a'), tok('b')) },
      { status: 200, body: sse(tok('a'), { error: { message: 'engine died' } }) },
      { status: 200, body: 'data: {not json\n\n' },
    ];
    answers.forEach((a, i) => rt.iterate(i, () => a));
    const kinds = rt.samples.filter((s) => s.name === 'completion_error_kinds').map((s) => s.tags.kind);
    assert.deepEqual(kinds, ['http_500', 'http_429', 'timeout', 'network', 'incomplete_stream', 'stream_error', 'bad_response']);
    const errs = rt.samples.filter((s) => s.name === 'completion_errors').map((s) => s.value);
    assert.deepEqual(errs, [false, true, true, true, true, true, true, true]);
    assert.deepEqual(
      rt.samples.filter((s) => s.name === 'completion_tokens').map((s) => s.value),
      [5],
      'tokens of the successful stream, from its usage chunk',
    );
    assert.deepEqual(
      rt.samples.filter((s) => s.name === 'completion_content_chunks').map((s) => s.value),
      [2],
      'the empty-text chunk is not content',
    );
    assert.equal(rt.checks[0]!['stream ends with [DONE]'], true);
    assert.equal(rt.checks[5]!['stream ends with [DONE]'], false);
  });

  it('stops sending at MAX_REQUESTS (idle VUs nap instead of spinning)', async () => {
    const rt = await loadK6Script(SCRIPT, { MAX_REQUESTS: '3' });
    for (let i = 0; i < 6; i++) rt.iterate(i, () => okJson);
    assert.equal(rt.calls.length, 3);
    assert.deepEqual(rt.sleeps, [1, 1, 1]);
  });

  it('documents every k6 variable and CLI flag in loadtest/README.md, and that k6 cannot measure TTFT', async () => {
    const readme = await fs.readFile(path.resolve('loadtest/README.md'), 'utf8');
    for (const spec of OPTION_TABLE) {
      assert.ok(readme.includes(`--${spec.flag}`), `README mentions --${spec.flag}`);
      if (spec.env) assert.ok(readme.includes(spec.env), `README mentions ${spec.env}`);
    }
    assert.match(readme, /TTFT[^\n]*cannot be measured[^\n]*k6|k6[^\n]*cannot measure[^\n]*TTFT/i);
    const script = await fs.readFile(SCRIPT, 'utf8');
    assert.match(script, /TIME TO FIRST TOKEN AND INTER-TOKEN LATENCY CANNOT BE MEASURED\s*\n\s*\* CLIENT-SIDE IN k6/);
  });
});
