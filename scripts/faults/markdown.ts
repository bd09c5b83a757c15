/** docs/reliability-report.md from a FaultsReport: a summary, a table per scenario, the soak table. */
import { type FaultsReport, type RequestTally, type ScenarioResult, type SoakResult, scenarioNeverAnswered, scenarioPassed } from './report.ts';

const counts = (m: Record<string, number>): string =>
  Object.keys(m).length === 0
    ? '–'
    : Object.entries(m)
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `${k}: ${n}`)
        .join(', ');
const num = (n: number): string => (n === 0 ? '0' : String(n));
const ms = (n: number | null): string => (n === null ? '–' : n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`);
const mib = (n: number | null): string => (n === null ? '–' : `${Math.round(n)} MiB`);
const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function renderFaultsReport(r: FaultsReport): string {
  const out: string[] = [];
  const passed = r.scenarios.filter(scenarioPassed);
  const never = r.scenarios.reduce((n, s) => n + scenarioNeverAnswered(s), 0);
  out.push('# Reliability under faults and abuse');
  out.push('');
  out.push('Written by `npm run bench:faults` (scripts/bench-faults.ts); do not edit by hand. Each scenario starts its own server as a child process, runs closed-loop traffic, injects one fault, and records how every request ended. **Never answered** = no HTTP status within the bounded wait, or a stream that did not end within it: it must be 0 everywhere.');
  out.push('');
  out.push(`- Command: \`${r.command}\``);
  out.push(`- Date: ${r.date}; code: \`${r.code}\`; ${r.seconds.toFixed(0)} s in all`);
  out.push(`- Model: ${r.model}`);
  out.push(`- Load: ${r.load}`);
  const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' / ');
  out.push(`- Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memGiB.toFixed(0)} GiB, Node ${r.machine.node}; load average (1/5/15 min) ${la(r.machine.loadAvgStart)} at the start, ${la(r.machine.loadAvgEnd)} at the end (the machine is shared: latencies and detection times move with it, the counts should not)`);
  out.push('');
  out.push('## Summary');
  out.push('');
  out.push(`**${passed.length} of ${r.scenarios.length} scenarios pass**; ${never} request${never === 1 ? '' : 's'} never answered in all.`);
  out.push('');
  out.push('| scenario | sent | never answered | checks held | result |');
  out.push('| --- | ---: | ---: | ---: | --- |');
  for (const s of r.scenarios) {
    const sent = s.rows.reduce((n, row) => n + row.sent, 0);
    const held = s.checks.filter((c) => c.ok).length;
    const result = scenarioPassed(s) ? 'pass' : s.error !== null ? `**not run**: ${cell(s.error.split('\n')[0]!)}` : `**FAIL**: ${cell(failures(s))}`;
    out.push(`| [${s.title}](#${s.id}) | ${sent} | ${num(scenarioNeverAnswered(s))} | ${held}/${s.checks.length} | ${result} |`);
  }
  if (r.soak) {
    const flat = r.soak.rows.every((row) => Math.abs(row.driftEnd) <= r.soak!.tolerance && row.driftMax <= r.soak!.tolerance);
    out.push(`| [soak](#soak) | ${r.soak.rows.reduce((n, row) => n + row.sent, 0)} | ${num(r.soak.rows.reduce((n, row) => n + row.neverAnswered, 0))} | – | ${r.soak.error !== null ? `**not run**: ${cell(r.soak.error.split('\n')[0]!)}` : flat ? 'RSS flat' : '**RSS not flat**'} |`);
  }
  out.push('');
  for (const s of r.scenarios) out.push(...renderScenario(s));
  if (r.soak) out.push(...renderSoak(r.soak));
  out.push('## Reading the tables');
  out.push('');
  out.push('- **HTTP status**: the status of every request that got one, with the error body\'s `code` for errors (streams count under 200 and end in one of the next columns).');
  out.push('- **streams: finish_reason** / **streams: error event**: how each 200 stream ended (its first choice\'s finish_reason, or the `code` of the error event the server sent before `[DONE]`).');
  out.push('- **cut**: a stream or body closed without its end (no finish_reason, no error event); **conn. failed**: refused or closed before any status; **hung up**: the client disconnected on purpose.');
  out.push('- **never answered**: no status within the wait, or a stream still open at the end of it (the waits are in the scenario text). The bench stops such a request itself; it is what the fixes must bring to 0.');
  out.push('- **Detection**: ms from the fault (injection, signal, admin call) to the first probe or request that showed it; `–` = not seen within the scenario.');
  out.push('- **Metrics**: the change of `mop_requests_total` by `outcome` on /metrics over the scenario (the server\'s own account, to compare with the client\'s).');
  out.push('- **RSS**: of the server process (a child process: engine threads included, the load generator not), from /proc before the fault and at the end.');
  out.push('');
  return out.join('\n');
}

/** The checks that failed and the never-answered count, in a few words. */
function failures(s: ScenarioResult): string {
  const parts: string[] = [];
  const never = scenarioNeverAnswered(s);
  if (never > 0) parts.push(`${never} never answered`);
  for (const c of s.checks) if (!c.ok) parts.push(`${c.what} (${c.seen})`);
  return parts.join('; ');
}

function renderScenario(s: ScenarioResult): string[] {
  const out: string[] = [];
  out.push(`<a id="${s.id}"></a>`);
  out.push(`### ${s.title} (\`${s.id}\`) — ${scenarioPassed(s) ? 'pass' : s.error !== null ? 'not run' : 'FAIL'}`);
  out.push('');
  out.push(`${s.procedure} Server: ${s.server}. ${s.seconds.toFixed(0)} s.`);
  out.push('');
  if (s.error !== null) {
    out.push('The harness could not run it:');
    out.push('');
    out.push('```');
    out.push(s.error);
    out.push('```');
    out.push('');
  }
  if (s.rows.length > 0) out.push(...requestTable(s.rows), '');
  if (s.detections.length > 0) out.push(`Detection: ${s.detections.map((d) => `${d.what} ${ms(d.ms)}`).join('; ')}.`, '');
  out.push(`Metrics (\`mop_requests_total\` change by outcome): ${s.metricDeltas === null ? '/metrics did not answer at the start or the end' : counts(s.metricDeltas)}. RSS of the server process: ${mib(s.rssBeforeMiB)} before, ${mib(s.rssAfterMiB)} at the end.`);
  out.push('');
  if (s.checks.length > 0) {
    out.push('| check | held | seen |');
    out.push('| --- | --- | --- |');
    for (const c of s.checks) out.push(`| ${cell(c.what)} | ${c.ok ? 'yes' : '**no**'} | ${cell(c.seen)} |`);
    out.push('');
  }
  if (s.notes.length > 0) {
    out.push('Server log (lines worth reading):');
    out.push('');
    out.push('```');
    out.push(...s.notes);
    out.push('```');
    out.push('');
  }
  return out;
}

export function requestTable(rows: readonly RequestTally[]): string[] {
  const out = ['| requests | sent | HTTP status | streams: finish_reason | streams: error event | cut | conn. failed | hung up | never answered | p50 / max |', '| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | --- |'];
  for (const r of rows) {
    const never = r.neverAnswered > 0 ? `**${r.neverAnswered}**` : '0';
    out.push(`| ${cell(r.group)} | ${r.sent} | ${counts(r.byStatus)} | ${counts(r.streamFinish)} | ${counts(r.streamError)} | ${num(r.cut)} | ${num(r.connectionFailed)} | ${num(r.clientAborted)} | ${never} | ${ms(r.p50Ms)} / ${ms(r.maxMs)} |`);
  }
  return out;
}

function renderSoak(s: SoakResult): string[] {
  const out: string[] = [];
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  out.push('<a id="soak"></a>');
  out.push('## Soak: RSS across many requests');
  out.push('');
  out.push(`${s.model}, ${s.concurrency} requests at a time, one kind after another; RSS of the server process (${s.server}) sampled every 250 ms, each kind measured from its first sample; a warm-up of ${s.warmup === undefined ? 'every kind (2% of N, 50 to 200 requests each)' : `${s.warmup} requests of every kind`} comes first and is not measured. Target: flat within ±${(s.tolerance * 100).toFixed(0)}%.`);
  out.push('');
  if (s.error !== null) out.push('```', s.error, '```', '');
  if (s.rows.length > 0) {
    out.push('| kind | requests (planned) | ok | failed | never answered | time | RSS start | min | max | end | end vs start | max vs start | flat ±' + (s.tolerance * 100).toFixed(0) + '% |');
    out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
    for (const r of s.rows) {
      const flat = Math.abs(r.driftEnd) <= s.tolerance && r.driftMax <= s.tolerance;
      out.push(`| ${r.kind} | ${r.sent} (${r.planned}) | ${r.ok} | ${num(r.failed)} | ${r.neverAnswered > 0 ? `**${r.neverAnswered}**` : '0'} | ${r.seconds.toFixed(0)} s | ${mib(r.rssStartMiB)} | ${mib(r.rssMinMiB)} | ${mib(r.rssMaxMiB)} | ${mib(r.rssEndMiB)} | ${pct(r.driftEnd)} | ${pct(r.driftMax)} | ${flat ? 'yes' : '**no**'} |`);
    }
    out.push('');
    if (s.rows.some((r) => r.sent < r.planned)) out.push('Fewer requests than planned: the kind hit its time cap (`--soak-max-sec`).', '');
  }
  return out;
}
