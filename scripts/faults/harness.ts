/**
 * What every fault scenario shares: the settings of a run (model, sizes, waits), the request
 * bodies of each kind, and `runScenario`, which starts the scenario's server, takes /metrics and
 * RSS before and after, runs the scenario's body, stops the server (bounded) and turns whatever
 * happened — including the harness failing — into a ScenarioResult.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RequestSpec } from './client.ts';
import { outcomeDeltas, requestOutcomes } from './metrics.ts';
import type { Check, Detection, RequestTally, ScenarioResult } from './report.ts';
import { type ServerEntry, ServerChild } from './server-child.ts';

export interface FaultSettings {
  /** `mop serve` flags that pick the model (`-m DIR --dtype int8`, or none for the bundled one). */
  modelArgs: string[];
  /** The dense model's served id. */
  modelId: string;
  quick: boolean;
  maxBatch: number;
  maxQueue: number;
  context: number;
  /** Closed-loop workers of the background load. */
  concurrency: number;
  /** Tokens of each load request. */
  maxTokens: number;
  /** Tokens of a long stream (runs past a shutdown grace, keeps a slot while a reader stalls). */
  longTokens: number;
  /** Load before a fault is injected, and how long to watch after it. */
  warmMs: number;
  observeMs: number;
  /** After a fault that takes the engine down: how long serving may take to come back. */
  recoverWaitMs: number;
  /** Bounded waits of every request: for its status, and for its end. */
  statusWaitMs: number;
  endWaitMs: number;
  /** Server start-up (load, engine, probe) bound. */
  startWaitMs: number;
  /** --engine-stall-ms of the stall scenario, and how long the injected stall blocks the engine. */
  engineStallMs: number;
  stallMs: number;
  /** --shutdown-grace-ms of the servers (the sigterm scenario's own is shorter). */
  graceMs: number;
  /** Bound on a prune job the scenarios start (a victim variant, the store's export). */
  pruneWaitMs: number;
  adminToken: string;
  prompts: readonly string[];
  /** Where server logs (and scratch files) go. */
  outDir: string;
  /** The model store the unload scenarios share (a store hit makes the second victim fast). */
  storeDir: string;
  log: (line: string) => void;
}

/** A small prune: seconds, not minutes (no recovery, little calibration). */
export const QUICK_PRUNE = { target: 0.1, strategy: 'depth', samples: 2, seq_len: 16, recovery: 'none' } as const;

export function streamRequest(s: FaultSettings, i: number, extra: Record<string, unknown> = {}): RequestSpec {
  return { path: '/v1/completions', body: { prompt: s.prompts[i % s.prompts.length], max_tokens: s.maxTokens, temperature: 0, ignore_eos: true, stream: true, ...extra }, statusWaitMs: s.statusWaitMs, endWaitMs: s.endWaitMs };
}

// A JSON answer's status comes with its end, so JSON requests wait as long for it as a stream waits for its end.
export function generationRequest(s: FaultSettings, i: number, extra: Record<string, unknown> = {}): RequestSpec {
  return { path: '/v1/completions', body: { prompt: s.prompts[i % s.prompts.length], max_tokens: s.maxTokens, temperature: 0, ignore_eos: true, ...extra }, statusWaitMs: s.endWaitMs, endWaitMs: s.endWaitMs };
}

/** Log-probabilities of a prompt (echo, max_tokens 0): what evaluation harnesses send. */
export function scoringRequest(s: FaultSettings, i: number, extra: Record<string, unknown> = {}): RequestSpec {
  const prompt = [0, 1, 2, 3].map((k) => s.prompts[(i + k) % s.prompts.length]).join(' ');
  return { path: '/v1/completions', body: { prompt, max_tokens: 0, echo: true, logprobs: 1, ...extra }, statusWaitMs: s.endWaitMs, endWaitMs: s.endWaitMs };
}

export function chatRequest(s: FaultSettings, i: number, extra: Record<string, unknown> = {}): RequestSpec {
  return { path: '/v1/chat/completions', body: { messages: [{ role: 'user', content: s.prompts[i % s.prompts.length] }], max_tokens: s.maxTokens, temperature: 0, ignore_eos: true, ...extra }, statusWaitMs: s.endWaitMs, endWaitMs: s.endWaitMs };
}

/** An admin call (bearer token), bounded like any request. */
export function adminRequest(s: FaultSettings, method: 'GET' | 'POST' | 'PUT' | 'DELETE', p: string, body: Record<string, unknown> = {}): RequestSpec {
  return { path: '/admin' + p, method, body, headers: { authorization: `Bearer ${s.adminToken}` }, statusWaitMs: s.statusWaitMs, endWaitMs: s.endWaitMs };
}

/** What a scenario's body fills in; runScenario adds the rest. */
export interface ScenarioRecord {
  rows: RequestTally[];
  detections: Detection[];
  checks: Check[];
  notes: string[];
}

export interface ScenarioDef {
  id: string;
  title: string;
  procedure: (s: FaultSettings) => string;
  entry: ServerEntry;
  /** Flags beyond the model's and the shared ones. */
  serverArgs: (s: FaultSettings) => string[];
  /** Waits for ready before the body (false: the body starts the wait itself, e.g. SIGTERM during start-up). */
  waitReady?: boolean;
  /** Runs before the server starts (scratch files its flags name). */
  prepare?: (s: FaultSettings) => Promise<void>;
  /** Takes /metrics at the end (false where the server is meant to be gone by then). */
  scrapeAtEnd?: boolean;
  body: (server: ServerChild, s: FaultSettings, record: ScenarioRecord) => Promise<void>;
  /** Its requests may be refused as invalid (400): the requests are meant to be bad. */
  expectsInvalid?: boolean;
  /** Runs after the server has stopped, whatever happened (unmounts, scratch files). */
  cleanup?: (s: FaultSettings) => Promise<void>;
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Paths in the report relative to the repository (the report is read elsewhere). */
const relative = (text: string) => text.replaceAll(repoRoot + path.sep, '');

/** Server log lines a reader of the report wants next to the numbers. */
const NOTABLE = /error|fail|stall|restart|unavailable|crash|exit|warn|died|killed|abort|refus|not ready|did not|timed out|EROFS|ENOSPC/i;

export async function runScenario(def: ScenarioDef, s: FaultSettings): Promise<ScenarioResult> {
  const t0 = performance.now();
  const record: ScenarioRecord = { rows: [], detections: [], checks: [], notes: [] };
  const args = ['--max-batch', String(s.maxBatch), '--max-queue', String(s.maxQueue), '--context', String(s.context), '--admin-token', s.adminToken, '--shutdown-grace-ms', String(s.graceMs), ...s.modelArgs, ...def.serverArgs(s)];
  const result: ScenarioResult = {
    id: def.id,
    title: def.title,
    procedure: def.procedure(s),
    server: `${def.entry} ${args.filter((a, i) => a !== s.adminToken || args[i - 1] !== '--admin-token').join(' ').replace('--admin-token', '--admin-token <token>')}`,
    rows: record.rows,
    detections: record.detections,
    metricDeltas: null,
    rssBeforeMiB: null,
    rssAfterMiB: null,
    checks: record.checks,
    notes: record.notes,
    error: null,
    seconds: 0,
  };
  s.log(`scenario ${def.id}: starting the server (${def.entry})`);
  try {
    await def.prepare?.(s);
  } catch (e) {
    result.error = `preparing the scenario failed: ${e instanceof Error ? e.message : String(e)}`;
    return result;
  }
  const server = new ServerChild({ entry: def.entry, args, logFile: path.join(s.outDir, `faults-${def.id}.log`) });
  try {
    let before = null;
    if (def.waitReady !== false) {
      await server.ready(s.startWaitMs);
      before = await requestOutcomes(server.url);
      result.rssBeforeMiB = mibOf(server.rssBytes());
    }
    await def.body(server, s, record);
    if (def.waitReady === false) result.rssBeforeMiB = null;
    if (def.scrapeAtEnd !== false && server.url !== '') {
      result.metricDeltas = outcomeDeltas(before, await requestOutcomes(server.url));
      result.rssAfterMiB = mibOf(server.rssBytes());
    }
  } catch (e) {
    result.error = e instanceof Error ? (e.stack ?? e.message) : String(e);
    s.log(`scenario ${def.id}: harness error: ${result.error.split('\n')[0]}`);
  } finally {
    const { exit, killed } = await server.stop(s.graceMs + 10_000);
    if (killed) record.notes.push(`(bench) the server did not exit within ${(s.graceMs + 10_000) / 1000} s of SIGTERM at the end of the scenario; killed`);
    else if (exit.code !== 0 && def.scrapeAtEnd !== false) record.notes.push(`(bench) the server exited with ${exit.code ?? exit.signal} at the end of the scenario`);
    await def.cleanup?.(s).catch((e) => record.notes.push(`(bench) cleanup failed: ${String(e)}`));
  }
  // A 400 where the scenario sends good requests is the bench's own mistake (a prompt too long for
  // --context, say): the scenario then did not measure what it says.
  const invalid = record.rows.flatMap((r) => Object.entries(r.byStatus).filter(([k]) => k.startsWith('400')).map(([k, n]) => `${n} × ${k} in '${r.group}'`));
  if (!def.expectsInvalid && invalid.length > 0) record.checks.push({ what: '(bench sanity) no request refused as invalid', ok: false, seen: invalid.join('; ') });
  const notable = server.lines.filter((l) => NOTABLE.test(l) && !/^\s*MOP_|^\s{2}/.test(l));
  record.notes.unshift(...notable.slice(0, 6).map(clip), ...(notable.length > 12 ? [`… ${notable.length - 12} more such lines …`] : []), ...notable.slice(Math.max(6, notable.length - 6)).map(clip));
  result.server = relative(result.server);
  result.procedure = relative(result.procedure);
  record.notes.splice(0, record.notes.length, ...record.notes.map(relative));
  if (result.error !== null) result.error = relative(result.error);
  result.seconds = (performance.now() - t0) / 1000;
  s.log(`scenario ${def.id}: done in ${result.seconds.toFixed(0)} s${result.error ? ' (harness error)' : ''}`);
  return result;
}

const clip = (l: string) => (l.length > 300 ? l.slice(0, 300) + ' …' : l);

export function mibOf(bytes: number | null): number | null {
  return bytes === null ? null : bytes / 2 ** 20;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** ms from `sinceMs` to the first outcome sent after it... or ended after it, matching `pred`. */
export function firstAfter<T extends { atMs: number; ms: number }>(outcomes: readonly T[], sinceMs: number, pred: (o: T) => boolean): number | null {
  let best: number | null = null;
  for (const o of outcomes) {
    const endAt = o.atMs + o.ms;
    if (endAt < sinceMs || !pred(o)) continue;
    const d = endAt - sinceMs;
    if (best === null || d < best) best = d;
  }
  return best;
}
