/**
 * The dashboard and the alerts only show what the server exports: every metric name (and every
 * non-target label) that their PromQL reads must be in a running server's /metrics output.
 * Names come from the dashboard JSON and the helm-rendered PrometheusRule (queried-metrics.ts).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultServerConfig } from '../../src/server/config.ts';
import { type RunningServer, startServer } from '../../src/server/main.ts';
import { alertQueries, dashboardQueries, matcherLabels, matcherValues, metricNames, queriedMetrics, repoRoot } from './queried-metrics.ts';

/** Labels Prometheus attaches to every scraped series (target labels), not the server. */
const targetLabels = new Set(['namespace', 'job', 'pod', 'instance', 'service', 'container', 'endpoint']);

interface Family {
  type: string;
  /** Label names seen on its samples (none when it has no samples yet). */
  labels: Set<string>;
}

/** Families of a Prometheus text exposition, by name, with the label names of their samples. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  for (const m of text.matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/gm)) families.set(m[1]!, { type: m[2]!, labels: new Set() });
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? /.exec(line);
    if (!m) continue;
    const family = familyOf(families, m[1]!);
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) family?.labels.add(l[1]!);
  }
  return families;
}

/** The family a series name belongs to: itself, or a histogram/summary's _bucket/_sum/_count. */
function familyOf(families: Map<string, Family>, series: string): Family | undefined {
  const direct = families.get(series);
  if (direct) return direct;
  const m = /^(.*)_(bucket|sum|count)$/.exec(series);
  const base = m ? families.get(m[1]!) : undefined;
  if (base && (base.type === 'histogram' || (base.type === 'summary' && m![2] !== 'bucket'))) return base;
  return undefined;
}

describe('PromQL of the dashboard and alerts', () => {
  it('reads the metric names it should (the extraction itself)', () => {
    assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, model) (rate(mop_x_bucket{job="a",model=~"$m"}[$__rate_interval]))) > 30'), ['mop_x_bucket']);
    assert.deepEqual(metricNames('label_values(mop_a{namespace=~"$namespace"}, model)'), ['mop_a']);
    assert.deepEqual(metricNames('max by (model) (mop_a{x="1"} > 0) unless max by (model) (mop_a offset 2m) / ignoring(model) group_left mop_b'), ['mop_a', 'mop_b']);
    assert.deepEqual(matcherValues('rate(mop_requests_total{outcome=~"error|timeout"}[5m])', 'outcome'), ['error', 'timeout']);
  });

  it('queries only mop_* metrics, the dashboard at least one per panel target', () => {
    const queries = [...dashboardQueries(), ...alertQueries()];
    assert.ok(alertQueries().length >= 3, 'the PrometheusRule has alerts');
    for (const q of queries) {
      const names = metricNames(q.expr);
      assert.ok(names.length > 0, `${q.source} reads no metric: ${q.expr}`);
      for (const n of names) assert.match(n, /^mop_/, `${q.source} reads ${n}, which the server does not export`);
    }
  });

  it('compares outcome labels only with outcomes the server counts', () => {
    // The RequestOutcome union in src/server/metrics.ts is the list of outcome label values.
    const source = fs.readFileSync(path.join(repoRoot, 'src/server/metrics.ts'), 'utf8');
    const union = /export type RequestOutcome\s*=([^;]+);/.exec(source);
    assert.ok(union, 'src/server/metrics.ts declares RequestOutcome');
    const outcomes = new Set([...union[1]!.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]!));
    for (const q of [...dashboardQueries(), ...alertQueries()]) {
      for (const v of matcherValues(q.expr, 'outcome')) assert.ok(outcomes.has(v), `${q.source} matches outcome "${v}"; the server counts ${[...outcomes].join(', ')}`);
    }
  });
});

describe('the server /metrics output', () => {
  let server: RunningServer;
  let exposition: Map<string, Family>;

  before(async () => {
    server = await startServer({ ...defaultServerConfig, port: 0, host: '127.0.0.1', threads: 1, maxBatch: 2, maxQueue: 4 }, { log: () => {} });
    // One generation, so histograms and labelled counters have samples whose labels we can see.
    const r = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 4, temperature: 0 }),
    });
    const body = await r.text();
    assert.equal(r.status, 200, body);
    const m = await fetch(`${server.url}/metrics`);
    assert.equal(m.status, 200);
    exposition = parseExposition(await m.text());
  });

  after(async () => {
    await server?.close();
  });

  it('has every metric the dashboard and the alerts query', () => {
    const missing: string[] = [];
    for (const [name, sources] of queriedMetrics()) {
      if (!familyOf(exposition, name)) missing.push(`${name} (used by ${sources.join('; ')})`);
    }
    assert.deepEqual(missing, [], `metrics queried but not exported:\n${missing.join('\n')}`);
  });

  it('has every label the queries select on, besides the target labels Prometheus adds', () => {
    const problems: string[] = [];
    for (const q of [...dashboardQueries(), ...alertQueries()]) {
      for (const [series, labels] of matcherLabels(q.expr)) {
        const family = familyOf(exposition, series);
        if (!family || family.labels.size === 0) continue; // no samples yet: names are checked above
        for (const l of labels) if (!targetLabels.has(l) && !family.labels.has(l)) problems.push(`${q.source}: ${series} has no label '${l}'`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it('labels every mop_* sample with the variant (model), which every panel groups by', () => {
    for (const [name, family] of exposition) {
      if (!name.startsWith('mop_') || family.labels.size === 0) continue;
      assert.ok(family.labels.has('model'), `${name} has no model label`);
    }
  });
});
