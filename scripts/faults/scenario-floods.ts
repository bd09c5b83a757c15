/**
 * Floods: many more concurrent requests than the batch and the queue hold (--max-batch +
 * --max-queue), all sent at once, beside a bystander stream loop. The server must refuse what does
 * not fit with 429 at once, answer the rest, and serve normally right after.
 */
import { neverAnswered, type Outcome, type RequestSpec, send } from './client.ts';
import { ClosedLoop } from './closed-loop.ts';
import { type FaultSettings, generationRequest, type ScenarioDef, type ScenarioRecord, scoringRequest, sleep, streamRequest } from './harness.ts';
import { tally } from './report.ts';
import type { ServerChild } from './server-child.ts';

/** Requests of one flood: three times what the batch and the queue hold. */
const floodSize = (s: FaultSettings) => 3 * (s.maxBatch + s.maxQueue);

async function flood(server: ServerChild, s: FaultSettings, record: ScenarioRecord, what: string, make: (i: number) => RequestSpec): Promise<void> {
  const bystander = new ClosedLoop(server.url, { concurrency: 1, maxRequests: 1000, maxMs: s.warmMs + 2 * s.endWaitMs, request: (i) => streamRequest(s, i) });
  await sleep(s.warmMs);
  const n = floodSize(s);
  const waves: Outcome[][] = [];
  for (let wave = 0; wave < 2; wave++) waves.push(await Promise.all(Array.from({ length: n }, (_, i) => send(server.url, make(wave * n + i)))));
  const others = await bystander.stop();
  const after = await Promise.all(Array.from({ length: s.maxBatch }, (_, i) => send(server.url, make(i))));
  record.rows.push(tally(`${what} flood, wave 1 (${n} at once)`, waves[0]!), tally(`${what} flood, wave 2 (${n} at once, after wave 1 ended)`, waves[1]!), tally('bystander streams (1 at a time)', others), tally(`${s.maxBatch} ${what} requests after the flood`, after));
  const all = waves.flat();
  const rejected = all.filter((o) => o.status === 429).length;
  const ok = all.filter((o) => o.status === 200).length;
  const servedAfter = after.filter((o) => o.status === 200 && (o.end === 'body' || o.end === 'finish')).length;
  const other = all.filter((o) => o.status !== 200 && o.status !== 429);
  record.checks.push(
    { what: `beyond batch + queue (${s.maxBatch} + ${s.maxQueue}), requests get 429 queue_full`, ok: rejected > 0 && all.filter((o) => o.status === 429 && o.code === 'queue_full').length === rejected, seen: `${rejected} × 429 of ${all.length}, ${ok} × 200` },
    { what: 'every flood request gets 200 or 429 (nothing else)', ok: other.length === 0, seen: other.length === 0 ? 'yes' : `${other.length} others: ${[...new Set(other.map((o) => `${o.status || o.end}${o.code ? ' ' + o.code : ''}`))].join(', ')}` },
    { what: 'the 429s come at once (not after waiting for a slot)', ok: rejected === 0 || Math.max(...all.filter((o) => o.status === 429).map((o) => o.ms)) < 2000, seen: rejected === 0 ? '–' : `slowest 429 after ${Math.round(Math.max(...all.filter((o) => o.status === 429).map((o) => o.ms)))} ms` },
    { what: 'requests right after the flood are served', ok: servedAfter === after.length, seen: `${servedAfter} of ${after.length}` },
    { what: 'no request hung', ok: ![...all, ...others, ...after].some(neverAnswered), seen: `${[...all, ...others, ...after].filter(neverAnswered).length} never answered` },
  );
}

export const scoringFloodScenario: ScenarioDef = {
  id: 'scoring-flood',
  title: 'Scoring flood',
  procedure: (s) => `Two waves of ${floodSize(s)} concurrent prompt-scoring requests (\`echo: true, logprobs: 1, max_tokens: 0\`, ~4 prompts long), three times --max-batch + --max-queue, the second after the first has ended; a bystander streams one completion at a time meanwhile; then ${s.maxBatch} scoring requests.`,
  entry: 'mop serve',
  serverArgs: () => [],
  body: (server, s, record) => flood(server, s, record, 'scoring', (i) => scoringRequest(s, i)),
};

export const generationFloodScenario: ScenarioDef = {
  id: 'generation-flood',
  title: 'Generation flood',
  procedure: (s) => `Two waves of ${floodSize(s)} concurrent completions (${s.maxTokens} tokens; every other one streaming), three times --max-batch + --max-queue, the second after the first has ended; a bystander streams one completion at a time meanwhile; then ${s.maxBatch} completions.`,
  entry: 'mop serve',
  serverArgs: () => [],
  body: (server, s, record) => flood(server, s, record, 'generation', (i) => (i % 2 === 0 ? streamRequest(s, i) : generationRequest(s, i))),
};
