/**
 * The one place that says which metrics the deployment depends on: every PromQL expression of
 * the Grafana dashboard (panel targets, template variable queries, annotations) and of the
 * PrometheusRule alerts, and the metric names they reference, extracted from the files
 * themselves. Tests compare these names with the server's /metrics output.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { splitHelmOutput } from './helm-template.ts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const chartDir = path.join(repoRoot, 'deploy/helm/mop-serve');
export const renderedDir = path.join(repoRoot, 'deploy/helm/rendered');
export const dashboardPath = path.join(chartDir, 'dashboards/mop-serve.json');

export interface PromQuery {
  /** Where it comes from, e.g. "dashboard panel 'Request rate' A" or "alert MopServeQueueSaturated". */
  source: string;
  expr: string;
}

/** Panels, including those nested in collapsed rows. */
export function allPanels(dashboard: { panels?: unknown[] }): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const p of (dashboard.panels ?? []) as Record<string, unknown>[]) {
    out.push(p);
    if (Array.isArray(p.panels)) out.push(...(p.panels as Record<string, unknown>[]));
  }
  return out;
}

export function loadDashboard(): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(dashboardPath, 'utf8')) as Record<string, unknown>;
}

export function dashboardQueries(dashboard: Record<string, unknown> = loadDashboard()): PromQuery[] {
  const out: PromQuery[] = [];
  for (const p of allPanels(dashboard)) {
    for (const t of (p.targets ?? []) as { refId?: string; expr?: string }[]) {
      if (t.expr) out.push({ source: `dashboard panel '${String(p.title)}' ${t.refId ?? ''}`.trim(), expr: t.expr });
    }
  }
  const templating = (dashboard.templating as { list?: Record<string, unknown>[] } | undefined)?.list ?? [];
  for (const v of templating) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query as { query?: string } | undefined)?.query;
    if (q) out.push({ source: `dashboard variable $${String(v.name)}`, expr: q });
  }
  const annotations = (dashboard.annotations as { list?: Record<string, unknown>[] } | undefined)?.list ?? [];
  for (const a of annotations) if (typeof a.expr === 'string') out.push({ source: `dashboard annotation '${String(a.name)}'`, expr: a.expr });
  return out;
}

/** Alert and recording rule expressions of the PrometheusRule in a helm-rendered manifest stream. */
export function alertQueries(renderedText: string = fs.readFileSync(path.join(renderedDir, 'default.yaml'), 'utf8')): PromQuery[] {
  const out: PromQuery[] = [];
  for (const docs of splitHelmOutput(renderedText).values()) {
    for (const doc of docs) {
      if (doc.kind !== 'PrometheusRule') continue;
      const groups = (doc.spec as { groups: { rules: { alert?: string; record?: string; expr: string }[] }[] }).groups;
      for (const g of groups) for (const r of g.rules) out.push({ source: `alert ${r.alert ?? r.record}`, expr: String(r.expr) });
    }
  }
  return out;
}

const promqlKeywords = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'atan2']);

/**
 * The metric names a PromQL expression (or Grafana variable query) reads. Strings, label
 * matchers, ranges, grouping clauses, numbers and durations are stripped; what is left and not a
 * function call or keyword is a metric name. `label_values(metric, label)` names its metric first.
 */
export function metricNames(expr: string): string[] {
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  s = s.replace(/\blabel_values\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)/g, ' $1 ');
  s = s.replace(/\b\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|s|m|h|d|w|y)?\b/gi, ' ');
  const names = new Set<string>();
  for (const m of s.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const name = m[0];
    const after = s.slice(m.index + name.length);
    if (/^\s*\(/.test(after)) continue; // a function or aggregation
    if (promqlKeywords.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names];
}

/** Every metric name the dashboard and the alerts query, with where each is used. */
export function queriedMetrics(queries: PromQuery[] = [...dashboardQueries(), ...alertQueries()]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const q of queries) for (const name of metricNames(q.expr)) out.set(name, [...(out.get(name) ?? []), q.source]);
  return out;
}

/** Label names used in the label matchers of `metric{…}` inside an expression. */
export function matcherLabels(expr: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const m of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)) {
    const labels = out.get(m[1]!) ?? new Set<string>();
    for (const l of m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) labels.add(l[1]!);
    out.set(m[1]!, labels);
  }
  return out;
}

/** Values a query compares `label` with (=, =~ alternatives), e.g. outcome=~"error|timeout" → error, timeout. */
export function matcherValues(expr: string, label: string): string[] {
  const out: string[] = [];
  for (const m of expr.matchAll(new RegExp(`\\b${label}\\s*(=~|=|!=|!~)\\s*"([^"]*)"`, 'g'))) {
    out.push(...(m[1]!.includes('~') ? m[2]!.split('|') : [m[2]!]));
  }
  return out;
}
