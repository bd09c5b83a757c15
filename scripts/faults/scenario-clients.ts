/**
 * Misbehaving clients: streams whose reader stops reading (raw sockets, paused), and clients that
 * hang up mid-stream or give up waiting for a JSON answer. Other clients must go on being served,
 * and the slots the misbehaving ones held must come back.
 */
import { neverAnswered, type Outcome, send } from './client.ts';
import { ClosedLoop } from './closed-loop.ts';
import { generationRequest, type ScenarioDef, sleep, streamRequest } from './harness.ts';
import { tally } from './report.ts';
import { StalledReader } from './stalled-reader.ts';
import { median } from '../lib/stats.ts';

export const stalledReadersScenario: ScenarioDef = {
  id: 'stalled-readers',
  title: 'SSE clients that stop reading',
  procedure: (s) =>
    `${s.maxBatch / 2} raw sockets each send a streaming completion of ${s.longTokens} tokens, \`n: 2\` (together as many sequences as --max-batch), \`logprobs: 5\`, and never read (the socket is paused: the kernel buffers fill and the server's writes back up); meanwhile 2 bystanders stream ${s.maxTokens}-token completions in a closed loop for ${(s.observeMs * 2) / 1000} s. Then the stalled sockets read again (up to ${s.endWaitMs / 1000} s) and ${s.maxBatch} more completions are sent.`,
  entry: 'mop serve',
  serverArgs: () => [],
  body: async (server, s, record) => {
    const readers = await Promise.all(Array.from({ length: Math.max(1, s.maxBatch / 2) }, (_, i) => StalledReader.open(server.url, '/v1/completions', { prompt: s.prompts[i % s.prompts.length], max_tokens: s.longTokens, n: 2, temperature: 0, ignore_eos: true, stream: true, logprobs: 5 }, s.statusWaitMs)));
    await sleep(300);
    const bystanders = new ClosedLoop(server.url, { concurrency: 2, maxRequests: 1000, maxMs: s.observeMs * 2, request: (i) => streamRequest(s, i) });
    const during = await (async () => {
      await sleep(s.observeMs * 2);
      return bystanders.stop();
    })();
    const drained = await Promise.all(readers.map((r) => r.drain(s.endWaitMs)));
    const after = await Promise.all(Array.from({ length: s.maxBatch }, (_, i) => send(server.url, streamRequest(s, i))));
    record.rows.push(tally('stalled readers (read again at the end)', drained), tally('bystander streams meanwhile (2 at a time)', during), tally(`${s.maxBatch} streams after`, after));
    const servedDuring = during.filter((o) => o.end === 'finish').length;
    record.checks.push(
      { what: 'bystanders are served while the readers stall', ok: servedDuring > 0 && !during.some(neverAnswered), seen: `${servedDuring} of ${during.length} finished; ${during.filter(neverAnswered).length} never answered` },
      { what: 'streams after the stalled readers are served', ok: after.every((o) => o.end === 'finish'), seen: `${after.filter((o) => o.end === 'finish').length} of ${after.length}` },
      { what: 'every stalled reader got an ending once it read again (finish_reason, error event or a closed connection)', ok: !drained.some(neverAnswered), seen: drained.map((d) => `${d.end} (${(d.bytes / 1024).toFixed(0)} KiB)`).join(', ') },
    );
  },
};

export const disconnectsScenario: ScenarioDef = {
  id: 'disconnects',
  title: 'Disconnects mid-stream',
  procedure: (s) =>
    `${s.concurrency} streams as a baseline; then, ${s.concurrency} at a time, 30 streaming completions (${s.longTokens} tokens) that hang up after 2 chunks and 10 JSON completions that give up after 300 ms; then ${s.concurrency} streams again, which must be served as fast as the baseline was (the abandoned generations' slots freed).`,
  entry: 'mop serve',
  serverArgs: () => [],
  body: async (server, s, record) => {
    const baseline = await Promise.all(Array.from({ length: s.concurrency }, (_, i) => send(server.url, streamRequest(s, i))));
    const hangUps = new ClosedLoop(server.url, { concurrency: s.concurrency, maxRequests: 30, maxMs: 60_000, request: (i) => ({ ...streamRequest(s, i, { max_tokens: s.longTokens }), abortAfterChunks: 2 }) });
    const streams: Outcome[] = await hangUps.done();
    const giveUps = new ClosedLoop(server.url, { concurrency: s.concurrency, maxRequests: 10, maxMs: 60_000, request: (i) => ({ ...generationRequest(s, i, { max_tokens: s.longTokens }), abortAfterMs: 300 }) });
    const json: Outcome[] = await giveUps.done();
    await sleep(500);
    const after = await Promise.all(Array.from({ length: s.concurrency }, (_, i) => send(server.url, streamRequest(s, i))));
    record.rows.push(tally('baseline streams', baseline), tally('streams hung up after 2 chunks', streams), tally('JSON completions given up after 300 ms', json), tally(`${s.concurrency} streams after`, after));
    const p50 = (xs: Outcome[]) => median(xs.map((o) => o.ms));
    record.checks.push(
      { what: 'streams after the disconnects are all served', ok: after.every((o) => o.end === 'finish'), seen: `${after.filter((o) => o.end === 'finish').length} of ${after.length}` },
      { what: 'nothing hung (the hang-ups included: each got its first chunks)', ok: ![...baseline, ...streams, ...json, ...after].some(neverAnswered), seen: `${[...baseline, ...streams, ...json, ...after].filter(neverAnswered).length} never answered` },
      { what: 'streams after take at most 2 × the baseline + 1 s (the abandoned slots came back)', ok: p50(after) <= 2 * p50(baseline) + 1000, seen: `p50 ${Math.round(p50(after))} ms vs baseline ${Math.round(p50(baseline))} ms` },
    );
  },
};
