/**
 * A hand-written SVG chart of latency ratio (pruned / dense, end-to-end p50, from the client) against
 * achieved compression, one panel per model × concurrency, one polyline series per strategy (dense
 * at (0, 1) starts every series), hollow markers for the server-side ratio (histogram means), the
 * ideal "latency ∝ block parameters" line, the bound from parameter counts (LM head kept), and the
 * target. Pure: data in, markup out.
 */

export interface ChartPoint {
  /** Achieved compression (fraction of block parameters removed). */
  x: number;
  /** Client-side latency ratio. */
  y: number;
  /** Server-side latency ratio (optional hollow marker). */
  yServer?: number | null;
  label?: string;
}

export interface ChartSeries {
  strategy: string;
  points: ChartPoint[];
}

export interface ChartPanel {
  title: string;
  series: ChartSeries[];
  /** A target to mark, e.g. {x: 0.4, y: 0.61}. */
  target?: { x: number; y: number; label: string };
  /** Extra reference curves sampled on [0, xMax], e.g. the parameter-count bound. */
  references?: { label: string; f: (x: number) => number; dash: string }[];
}

export const STRATEGY_COLORS: Record<string, string> = { mop: '#1f77b4', depth: '#d62728', width: '#2ca02c' };

const PANEL_W = 360;
const PANEL_H = 260;
const MARGIN = { left: 48, right: 18, top: 28, bottom: 40 };
const X_MAX = 0.8;
const Y_MAX = 1.3;

/** Escape text for XML content and attribute values. */
export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

const n = (v: number) => (Math.round(v * 10) / 10).toString();

function panelSvg(p: ChartPanel, ox: number, oy: number): string {
  const w = PANEL_W - MARGIN.left - MARGIN.right;
  const h = PANEL_H - MARGIN.top - MARGIN.bottom;
  const yMax = Math.max(Y_MAX, ...p.series.flatMap((s) => s.points.map((q) => Math.max(q.y, q.yServer ?? 0))).filter(Number.isFinite).map((v) => Math.ceil(v * 10) / 10));
  const X = (x: number) => ox + MARGIN.left + (Math.min(Math.max(x, 0), X_MAX) / X_MAX) * w;
  const Y = (y: number) => oy + MARGIN.top + h - (Math.min(Math.max(y, 0), yMax) / yMax) * h;
  const out: string[] = [];
  out.push(`<g class="panel" data-title="${xmlEscape(p.title)}">`);
  out.push(`<text x="${n(ox + PANEL_W / 2)}" y="${n(oy + 16)}" text-anchor="middle" font-size="13" font-weight="bold">${xmlEscape(p.title)}</text>`);
  // grid and axes
  for (let gx = 0; gx <= X_MAX + 1e-9; gx += 0.2) {
    out.push(`<line x1="${n(X(gx))}" y1="${n(Y(0))}" x2="${n(X(gx))}" y2="${n(Y(yMax))}" stroke="#eee"/>`);
    out.push(`<text x="${n(X(gx))}" y="${n(Y(0) + 14)}" text-anchor="middle" font-size="10">${gx.toFixed(1)}</text>`);
  }
  for (let gy = 0; gy <= yMax + 1e-9; gy += 0.2) {
    out.push(`<line x1="${n(X(0))}" y1="${n(Y(gy))}" x2="${n(X(X_MAX))}" y2="${n(Y(gy))}" stroke="#eee"/>`);
    out.push(`<text x="${n(X(0) - 4)}" y="${n(Y(gy) + 3)}" text-anchor="end" font-size="10">${gy.toFixed(1)}</text>`);
  }
  out.push(`<line x1="${n(X(0))}" y1="${n(Y(0))}" x2="${n(X(X_MAX))}" y2="${n(Y(0))}" stroke="#333"/>`);
  out.push(`<line x1="${n(X(0))}" y1="${n(Y(0))}" x2="${n(X(0))}" y2="${n(Y(yMax))}" stroke="#333"/>`);
  out.push(`<text x="${n(X(X_MAX / 2))}" y="${n(Y(0) + 30)}" text-anchor="middle" font-size="11">compression (block parameters removed)</text>`);
  out.push(
    `<text x="${n(ox + 12)}" y="${n(Y(yMax / 2))}" text-anchor="middle" font-size="11" transform="rotate(-90 ${n(ox + 12)} ${n(Y(yMax / 2))})">e2e latency ratio (pruned / dense)</text>`,
  );
  // reference curves
  const ideal = [0, X_MAX].map((x) => `${n(X(x))},${n(Y(1 - x))}`).join(' ');
  out.push(`<polyline class="reference" data-reference="ideal" points="${ideal}" fill="none" stroke="#999" stroke-dasharray="6 4"/>`);
  for (const r of p.references ?? []) {
    const pts = Array.from({ length: 17 }, (_, i) => (i / 16) * X_MAX).map((x) => `${n(X(x))},${n(Y(r.f(x)))}`).join(' ');
    out.push(`<polyline class="reference" data-reference="${xmlEscape(r.label)}" points="${pts}" fill="none" stroke="#777" stroke-dasharray="${xmlEscape(r.dash)}"/>`);
  }
  if (p.target) {
    const { x, y } = p.target;
    out.push(`<line class="target" x1="${n(X(x) - 8)}" y1="${n(Y(y))}" x2="${n(X(x) + 8)}" y2="${n(Y(y))}" stroke="#000" stroke-width="2"/>`);
    out.push(`<text x="${n(X(x) + 10)}" y="${n(Y(y) + 4)}" font-size="10" stroke="#fff" stroke-width="3" paint-order="stroke">${xmlEscape(p.target.label)}</text>`);
  }
  // series
  for (const s of p.series) {
    const color = STRATEGY_COLORS[s.strategy] ?? '#555';
    const pts = [...s.points].filter((q) => Number.isFinite(q.x) && Number.isFinite(q.y)).sort((a, b) => a.x - b.x);
    out.push(`<g class="series" data-strategy="${xmlEscape(s.strategy)}">`);
    out.push(`<polyline points="${pts.map((q) => `${n(X(q.x))},${n(Y(q.y))}`).join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const q of pts) {
      const tip = `${s.strategy}${q.label ? ` ${q.label}` : ''}: compression ${q.x.toFixed(3)}, ratio ${q.y.toFixed(3)}${q.yServer != null && Number.isFinite(q.yServer) ? ` (server ${q.yServer.toFixed(3)})` : ''}`;
      out.push(`<circle cx="${n(X(q.x))}" cy="${n(Y(q.y))}" r="3.5" fill="${color}"><title>${xmlEscape(tip)}</title></circle>`);
      if (q.yServer != null && Number.isFinite(q.yServer)) out.push(`<circle cx="${n(X(q.x))}" cy="${n(Y(q.yServer))}" r="6" fill="none" stroke="${color}"/>`);
    }
    out.push('</g>');
  }
  out.push('</g>');
  return out.join('\n');
}

/** The whole chart: panels in a grid of `columns`, a legend on top. */
export function renderLatencyChart(panels: readonly ChartPanel[], o: { title: string; columns?: number }): string {
  const columns = Math.max(1, Math.min(o.columns ?? 2, panels.length || 1));
  const rows = Math.max(1, Math.ceil(panels.length / columns));
  const legendH = 68;
  const W = columns * PANEL_W;
  const H = legendH + rows * PANEL_H;
  const strategies = [...new Set(panels.flatMap((p) => p.series.map((s) => s.strategy)))];
  const refs = [...new Map(panels.flatMap((p) => p.references ?? []).map((r) => [r.label, r])).values()];
  const textW = (t: string) => Math.ceil(t.length * 6.5);
  const legend: string[] = [`<text x="${W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${xmlEscape(o.title)}</text>`];
  // Row 1: one entry per strategy and the server marker; row 2: the reference lines.
  let lx = 10;
  for (const s of strategies) {
    legend.push(`<line x1="${lx}" y1="36" x2="${lx + 20}" y2="36" stroke="${STRATEGY_COLORS[s] ?? '#555'}" stroke-width="2"/><text x="${lx + 24}" y="40" font-size="11">${xmlEscape(s)}</text>`);
    lx += 24 + textW(s) + 16;
  }
  const serverLabel = 'server-side ratio (histogram means)';
  legend.push(`<circle cx="${lx + 6}" cy="36" r="6" fill="none" stroke="#555"/><text x="${lx + 16}" y="40" font-size="11">${serverLabel}</text>`);
  lx = 10;
  for (const r of [{ label: 'ideal 1 − r', dash: '6 4', stroke: '#999' }, ...refs.map((x) => ({ ...x, stroke: '#777' }))]) {
    legend.push(`<line x1="${lx}" y1="56" x2="${lx + 20}" y2="56" stroke="${r.stroke}" stroke-dasharray="${xmlEscape(r.dash)}"/><text x="${lx + 24}" y="60" font-size="11">${xmlEscape(r.label)}</text>`);
    lx += 24 + textW(r.label) + 16;
  }
  const body = panels.map((p, i) => panelSvg(p, (i % columns) * PANEL_W, legendH + Math.floor(i / columns) * PANEL_H));
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    ...legend,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
