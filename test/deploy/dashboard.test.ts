/**
 * The Grafana dashboard (deploy/helm/mop-serve/dashboards/mop-serve.json) against the dashboard
 * schema of the version it declares. schemaVersion 39 is the classic dashboard JSON of Grafana
 * 10.3 to 11 (Grafana's kinds/dashboard/dashboard_kind.cue): required fields and their types,
 * grid positions inside the 24-column grid and not overlapping, unique panel ids and refIds,
 * template variables that exist wherever an expression uses them, and the panels the issue asks for.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allPanels, dashboardQueries, loadDashboard } from './queried-metrics.ts';

type Obj = Record<string, any>;

const dashboard = loadDashboard() as Obj;
const panels = allPanels(dashboard) as Obj[];
const dataPanels = panels.filter((p) => p.type !== 'row');
const variables = (dashboard.templating?.list ?? []) as Obj[];

/** Panel plugins that ship with Grafana (no plugin install needed). */
const corePanelTypes = new Set(['timeseries', 'stat', 'gauge', 'bargauge', 'table', 'text', 'heatmap', 'histogram', 'piechart', 'row', 'state-timeline', 'status-history', 'barchart']);
/** Variables Grafana defines itself. */
const builtinVariables = new Set(['__rate_interval', '__interval', '__interval_ms', '__range', '__range_s', '__range_ms', '__all', '__dashboard', '__from', '__to']);
const isUint = (n: unknown) => Number.isInteger(n) && (n as number) >= 0;

describe('Grafana dashboard JSON', () => {
  it('declares schemaVersion 39 with the dashboard fields it requires', () => {
    assert.equal(dashboard.schemaVersion, 39);
    assert.equal(typeof dashboard.title, 'string');
    assert.ok(dashboard.title.length > 0);
    assert.match(dashboard.uid, /^[a-zA-Z0-9_-]{8,40}$/, 'uid: 8-40 characters, stable so links and the sidecar keep it');
    assert.equal(dashboard.id, null, 'no instance-local id: Grafana assigns one on import');
    assert.equal(typeof dashboard.editable, 'boolean');
    assert.ok([0, 1, 2].includes(dashboard.graphTooltip));
    assert.equal(typeof dashboard.time?.from, 'string');
    assert.equal(typeof dashboard.time?.to, 'string');
    assert.ok(dashboard.refresh === false || typeof dashboard.refresh === 'string');
    assert.ok(isUint(dashboard.fiscalYearStartMonth) && dashboard.fiscalYearStartMonth < 12);
    assert.ok(Array.isArray(dashboard.tags) && dashboard.tags.every((t: unknown) => typeof t === 'string'));
    assert.ok(Array.isArray(dashboard.links));
    assert.ok(Array.isArray(dashboard.panels) && dashboard.panels.length > 0);
    assert.ok(Array.isArray(dashboard.templating?.list));
    assert.ok(Array.isArray(dashboard.annotations?.list));
  });

  it('has panels with a core type, a unique id, a title and a grid position inside the 24-column grid', () => {
    const ids = new Set<number>();
    for (const p of panels) {
      assert.ok(corePanelTypes.has(p.type), `panel type ${p.type}`);
      assert.ok(isUint(p.id) && !ids.has(p.id), `panel id ${p.id} unique`);
      ids.add(p.id);
      assert.ok(typeof p.title === 'string' && p.title.length > 0, `panel ${p.id} has a title`);
      const g = p.gridPos;
      assert.ok(g && isUint(g.h) && g.h > 0 && isUint(g.w) && g.w > 0 && g.w <= 24 && isUint(g.x) && g.x < 24 && isUint(g.y), `panel '${p.title}' gridPos ${JSON.stringify(g)}`);
      assert.ok(g.x + g.w <= 24, `panel '${p.title}' runs past column 24`);
      if (p.type === 'row') {
        assert.equal(typeof p.collapsed, 'boolean');
        assert.ok(Array.isArray(p.panels));
        assert.equal(g.w, 24);
      }
    }
  });

  it('lays the panels out without overlaps', () => {
    const cells = new Map<string, string>();
    for (const p of dashboard.panels as Obj[]) {
      const g = p.gridPos;
      for (let y = g.y; y < g.y + g.h; y++) {
        for (let x = g.x; x < g.x + g.w; x++) {
          const key = `${x},${y}`;
          assert.ok(!cells.has(key), `'${p.title}' overlaps '${cells.get(key)}' at ${key}`);
          cells.set(key, p.title);
        }
      }
    }
  });

  it('gives every data panel a Prometheus datasource, fieldConfig, options and targets with unique refIds', () => {
    for (const p of dataPanels) {
      assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `'${p.title}' datasource`);
      assert.ok(p.fieldConfig && typeof p.fieldConfig.defaults === 'object' && Array.isArray(p.fieldConfig.overrides), `'${p.title}' fieldConfig`);
      assert.equal(typeof p.options, 'object', `'${p.title}' options`);
      assert.ok(Array.isArray(p.targets) && p.targets.length > 0, `'${p.title}' targets`);
      const refIds = p.targets.map((t: Obj) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `'${p.title}' refIds unique`);
      for (const t of p.targets as Obj[]) {
        assert.match(t.refId, /^[A-Z]+$/);
        assert.ok(typeof t.expr === 'string' && t.expr.trim().length > 0, `'${p.title}' ${t.refId} expr`);
        assert.deepEqual(t.datasource, p.datasource);
      }
      const th = p.fieldConfig.defaults.thresholds;
      if (th) {
        assert.ok(['absolute', 'percentage'].includes(th.mode));
        assert.equal(th.steps[0].value, null, 'the first threshold step is the base (-Infinity, null in JSON)');
        for (const s of th.steps) assert.equal(typeof s.color, 'string');
      }
    }
  });

  it('defines a datasource variable and every variable the expressions use', () => {
    const names = new Set(variables.map((v) => v.name));
    const ds = variables.find((v) => v.name === 'datasource');
    assert.equal(ds?.type, 'datasource');
    assert.equal(ds?.query, 'prometheus');
    for (const v of variables) {
      assert.ok(['query', 'adhoc', 'constant', 'datasource', 'interval', 'textbox', 'custom'].includes(v.type), `variable ${v.name} type ${v.type}`);
      assert.ok([0, 1, 2].includes(v.hide));
      if (v.type === 'query') {
        assert.ok(typeof v.query === 'string' || typeof v.query?.query === 'string', `variable ${v.name} query`);
        assert.deepEqual(v.datasource, { type: 'prometheus', uid: '${datasource}' });
        assert.ok([1, 2].includes(v.refresh), `variable ${v.name} refreshes (on load or time change)`);
      }
    }
    for (const q of dashboardQueries(dashboard)) {
      for (const m of q.expr.matchAll(/\$\{?(\w+)\}?/g)) {
        assert.ok(names.has(m[1]!) || builtinVariables.has(m[1]!), `${q.source} uses $${m[1]}, which is not defined`);
      }
    }
  });

  it('has balanced PromQL (parentheses, braces, brackets, quotes)', () => {
    for (const q of dashboardQueries(dashboard)) {
      const stack: string[] = [];
      const pairs: Record<string, string> = { ')': '(', '}': '{', ']': '[' };
      const text = q.expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
      assert.equal((text.match(/"/g) ?? []).length % 2, 0, `${q.source}: unbalanced quotes`);
      for (const c of text) {
        if ('({['.includes(c)) stack.push(c);
        else if (c in pairs) assert.equal(stack.pop(), pairs[c], `${q.source}: unbalanced ${c} in ${q.expr}`);
      }
      assert.deepEqual(stack, [], `${q.source}: unclosed ${stack.join('')}`);
    }
  });

  it('shows per variant what the issue asks for, and the pruned/dense latency ratio', () => {
    const exprsOf = (re: RegExp) => dataPanels.filter((p) => re.test(p.title)).flatMap((p) => (p.targets as Obj[]).map((t) => t.expr as string));
    const want: [RegExp, RegExp][] = [
      [/^Request rate$/, /rate\(mop_requests_total\{/],
      [/End-to-end latency p50 \/ p99/, /histogram_quantile\(0\.99, sum by \(le, model\) \(rate\(mop_e2e_request_latency_seconds_bucket/],
      [/Time to first token/, /mop_time_to_first_token_seconds_bucket/],
      [/Time per output token/, /mop_time_per_output_token_seconds_bucket/],
      [/Tokens per second/, /rate\(mop_generation_tokens_total/],
      [/Queue depth/, /mop_num_requests_waiting/],
      [/KV-cache/, /mop_kv_cache_usage_ratio/],
      [/Compression ratio/, /mop_model_compression_ratio/],
    ];
    for (const [title, expr] of want) {
      const exprs = exprsOf(title);
      assert.ok(exprs.length > 0, `a panel titled ${title}`);
      assert.ok(exprs.some((e) => expr.test(e)), `${title} queries ${expr}`);
      const perVariant = dataPanels.find((p) => title.test(p.title))!;
      assert.ok((perVariant.targets as Obj[]).every((t) => /model/.test(t.legendFormat ?? '') || /by \([^)]*model/.test(t.expr)), `${title} is split by variant`);
    }
    const ratio = exprsOf(/Pruned \/ dense latency ratio/);
    assert.ok(
      ratio.some((e) => /model=~"\$pruned"/.test(e) && /model="\$dense"/.test(e) && /\/ ignoring\(model\) group_left/.test(e)),
      'the ratio divides each pruned variant by the dense one',
    );
    for (const name of ['dense', 'pruned']) assert.ok(variables.some((v) => v.name === name), `variable $${name}`);
  });
});
