/**
 * SIGTERM as an orchestrator sends it: while the server is still loading its model, and under
 * streaming load. Measured: how long the process takes to exit and with what, and how every client
 * in flight or arriving meanwhile was answered. The bounds checked are the ones the server
 * documents (src/cli/serve.ts, src/server/main.ts): a start-up stopped within 5 s; a drain within
 * --shutdown-grace-ms plus an 8 s margin; each with 3 s of slack for a loaded machine.
 */
import { neverAnswered, type Outcome } from './client.ts';
import { ClosedLoop } from './closed-loop.ts';
import { type ScenarioDef, sleep, streamRequest } from './harness.ts';
import { Probes } from './probes.ts';
import { tally } from './report.ts';

const STARTUP_EXIT_MS = 5000;
const SHUTDOWN_MARGIN_MS = 8000;
const SLACK_MS = 3000;
/** The sigterm-load server's --shutdown-grace-ms: shorter than its long streams. */
const LOAD_GRACE_MS = 3000;

export const sigtermStartupScenario: ScenarioDef = {
  id: 'sigterm-startup',
  title: 'SIGTERM during start-up',
  procedure: () => `\`mop serve\` is started and sent SIGTERM ${'300 ms'} after its configuration printout, while it loads the model and starts the engine (before it listens); the process must exit 0 within ${STARTUP_EXIT_MS / 1000} s.`,
  entry: 'mop serve',
  serverArgs: () => [],
  waitReady: false,
  scrapeAtEnd: false,
  body: async (server, s, record) => {
    const config = await server.waitForLine(/configuration/, s.startWaitMs);
    if (config === undefined) throw new Error(`no configuration printout within ${s.startWaitMs / 1000} s:\n${server.lines.slice(-10).join('\n')}`);
    await sleep(300);
    const stage = server.lines.filter((l) => !/^\s/.test(l) && !/^MOP_|^PORT|^HOST/.test(l.trim())).at(-1) ?? '';
    const listening = server.lines.some((l) => l.startsWith('listening on'));
    const at = performance.now();
    server.signal('SIGTERM');
    const { exit, killed } = await server.waitExit(30_000);
    const ms = exit.atMs - at;
    record.detections.push({ what: 'exit after SIGTERM', ms: killed ? null : ms });
    record.notes.push(`(bench) at the signal the server had ${listening ? 'already' : 'not yet'} listened; its last line: ${stage.slice(0, 200)}`);
    record.checks.push(
      { what: `exits within ${STARTUP_EXIT_MS / 1000} s (+${SLACK_MS / 1000} s slack)`, ok: !killed && ms <= STARTUP_EXIT_MS + SLACK_MS, seen: killed ? 'still running after 30 s; killed' : `${Math.round(ms)} ms` },
      { what: 'exit code 0', ok: exit.code === 0, seen: `${exit.code ?? exit.signal}` },
    );
  },
};

export const sigtermLoadScenario: ScenarioDef = {
  id: 'sigterm-load',
  title: 'SIGTERM under load',
  procedure: (s) =>
    `\`mop serve --shutdown-grace-ms ${LOAD_GRACE_MS}\` under closed-loop streaming load (${s.concurrency} at a time: half ${s.maxTokens}-token streams, half ${s.longTokens}-token ones that outlast the grace period on the 100M shape) for ${s.warmMs / 1000} s, then SIGTERM; clients go on sending until the process has exited (and 1 s more). In-flight streams must end (finish_reason — \`abort\` past the grace — or an error event), later requests get 503 or a refused connection, and the process exits 0 within the grace + ${SHUTDOWN_MARGIN_MS / 1000} s.`,
  entry: 'mop serve',
  serverArgs: () => ['--shutdown-grace-ms', String(LOAD_GRACE_MS)],
  scrapeAtEnd: false,
  body: async (server, s, record) => {
    const bound = LOAD_GRACE_MS + SHUTDOWN_MARGIN_MS + SLACK_MS;
    const load = new ClosedLoop(server.url, { concurrency: s.concurrency, maxRequests: 10_000, maxMs: s.warmMs + bound + 30_000, request: (i) => streamRequest(s, i, { max_tokens: i % 2 === 0 ? s.maxTokens : s.longTokens }) });
    await sleep(s.warmMs);
    const probes = new Probes(server.url, 100, 1000);
    const at = performance.now();
    server.signal('SIGTERM');
    const { exit, killed } = await server.waitExit(bound + 10_000);
    await sleep(1000);
    const outcomes = await load.stop();
    await probes.stop();
    const exitMs = exit.atMs - at;
    const inFlight = outcomes.filter((o) => o.atMs < at && o.atMs + o.ms >= at);
    const draining = outcomes.filter((o) => o.atMs >= at && o.atMs < exit.atMs);
    const afterExit = outcomes.filter((o) => o.atMs >= exit.atMs);
    record.rows.push(tally('load before SIGTERM', outcomes.filter((o) => o.atMs + o.ms < at)), tally('in flight at SIGTERM', inFlight), tally('sent while it shut down', draining), tally('sent after it exited', afterExit));
    record.detections.push({ what: '/ready not 200 after SIGTERM', ms: probes.firstFailure('/ready', at)?.ms ?? null }, { what: 'exit', ms: killed ? null : exitMs });
    const ended = (o: Outcome) => o.end === 'finish' || o.end === 'error-event';
    const refusedOk = (o: Outcome) => o.status === 503 || o.end === 'connection';
    record.checks.push(
      { what: `exits within the grace + ${SHUTDOWN_MARGIN_MS / 1000} s (+${SLACK_MS / 1000} s slack)`, ok: !killed && exitMs <= bound, seen: killed ? `still running after ${(bound + 10_000) / 1000} s; killed` : `${Math.round(exitMs)} ms` },
      { what: 'exit code 0', ok: exit.code === 0, seen: `${exit.code ?? exit.signal}` },
      { what: 'every stream in flight at SIGTERM ends with finish_reason or an error event', ok: inFlight.every(ended), seen: `${inFlight.filter(ended).length} of ${inFlight.length}: ${[...new Set(inFlight.map((o) => `${o.end}${o.finishReasons?.[0] ? ' ' + o.finishReasons[0] : ''}${o.code ? ' ' + o.code : ''}`))].join(', ') || '–'}` },
      { what: 'requests sent during the shutdown get 503 or a refused connection', ok: draining.every(refusedOk), seen: `${draining.filter(refusedOk).length} of ${draining.length}` },
      { what: 'no request hung', ok: !outcomes.some(neverAnswered), seen: `${outcomes.filter(neverAnswered).length} never answered` },
    );
  },
};
