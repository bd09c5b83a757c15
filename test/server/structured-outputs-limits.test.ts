/**
 * Client grammars cannot stall serving: a grammar past --max-grammar-bytes is refused before
 * anything compiles, one that compiles longer than --grammar-compile-timeout-ms is refused (its
 * disposable compile thread is stopped, never the engine) while plain requests keep being answered,
 * and a flood of distinct grammars gets 429s instead of an unbounded queue. Over real HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, okJson, postJson, scrape, startTestServer } from './helpers/server.ts';

/** 42 bytes whose compile takes xgrammar minutes: nested bounded repetitions expand multiplicatively. */
const HEAVY_REGEX = '((a|b){1,200}c){1,200}';

/** Every request here gives up after this: a hang fails the test instead of stalling the suite. */
const REQUEST_LIMIT_MS = 120_000;

const completions = (server: RunningServer, body: object) => postJson(server.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 8, ...body }, { signal: AbortSignal.timeout(REQUEST_LIMIT_MS) });

/** A JSON Schema of about `bytes` bytes: an object with that many short string properties. */
function schemaOfSize(bytes: number, tag = 'p'): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (let i = 0; JSON.stringify(properties).length < bytes; i++) properties[`${tag}${i}`] = { type: 'string', maxLength: 4 };
  return { type: 'object', properties };
}

describe('grammar size limit (--max-grammar-bytes)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ maxGrammarBytes: 2048 });
  });
  after(async () => server.close());

  it('refuses a schema larger than the limit with a 400 naming the field and the limit', async () => {
    const schema = schemaOfSize(4096);
    const err = await assertOpenAIError(await completions(server, { response_format: { type: 'json_schema', json_schema: { name: 'big', schema } } }), 400, 'response_format.json_schema.schema');
    assert.equal(err.code, 'grammar_too_large');
    assert.match(err.message, /2048/);
    assert.match(err.message, /--max-grammar-bytes/);
  });

  it('counts a choice list by all its choices together, and a regex or grammar by its text', async () => {
    const choices = Array.from({ length: 100 }, (_, i) => `choice number ${i} of the list`);
    assert.equal((await assertOpenAIError(await completions(server, { guided_choice: choices }), 400, 'guided_choice')).code, 'grammar_too_large');
    assert.equal((await assertOpenAIError(await completions(server, { guided_regex: 'a'.repeat(3000) }), 400, 'guided_regex')).code, 'grammar_too_large');
    // Empty choices are alternatives all the same: each counts at least a byte.
    assert.equal((await assertOpenAIError(await completions(server, { guided_choice: new Array<string>(3000).fill('') }), 400, 'guided_choice')).code, 'grammar_too_large');
    assert.equal((await assertOpenAIError(await completions(server, { structured_outputs: { grammar: `root ::= "${'x'.repeat(3000)}"` } }), 400, 'structured_outputs.grammar')).code, 'grammar_too_large');
  });

  it('accepts a schema within the limit, and counts refusals by reason', async () => {
    await okJson(completions(server, { response_format: { type: 'json_schema', json_schema: { name: 'small', schema: schemaOfSize(1000) } } }));
    const m = await scrape(server.url);
    assert.ok((m.get('mop_grammar_compile_failures_total{model="stories260K",reason="too_large"}') ?? 0) >= 5);
  });
});

describe('grammar compile time limit (--grammar-compile-timeout-ms)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ grammarCompileTimeoutMs: 1000 });
  });
  after(async () => server.close());

  it('refuses a grammar that compiles too long with a 400 naming the knob, while a plain completion is answered meanwhile', async () => {
    const heavy = completions(server, { guided_regex: HEAVY_REGEX });
    // Sent while the heavy grammar compiles (or its thread starts): answered without waiting for it.
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    await okJson(completions(server, { max_tokens: 4 }));
    const plainMs = performance.now() - t0;
    const err = await assertOpenAIError(await heavy, 400, 'guided_regex');
    assert.equal(err.code, 'grammar_too_complex');
    assert.match(err.message, /--grammar-compile-timeout-ms/);
    // The engine compiled nothing heavy: minutes of compile would have held this request that long.
    assert.ok(plainMs < 30_000, `a plain completion took ${plainMs.toFixed(0)} ms beside the heavy grammar`);
    assert.equal((await fetch(server.url + '/health')).status, 200);
    const m = await scrape(server.url);
    assert.equal(m.get('mop_grammar_compile_failures_total{model="stories260K",reason="timeout"}'), 1);
    assert.equal(m.get('mop_engine_stalled{model="stories260K"}'), 0);
  });

  it('compiles the next grammar in a new thread after one was stopped', async () => {
    const answer = await okJson<{ choices: { text: string; finish_reason: string }[] }>(completions(server, { guided_choice: ['yes', 'no'], max_tokens: 16 }));
    assert.ok(['yes', 'no'].includes(answer.choices[0]!.text), answer.choices[0]!.text);
  });

  it('refuses an unusable grammar with xgrammar\'s reason, as before', async () => {
    const err = await assertOpenAIError(await completions(server, { guided_grammar: 'root ::= (' }), 400, 'guided_grammar');
    assert.equal(err.code, 'invalid_grammar');
  });
});

describe('grammars waiting to compile are bounded', () => {
  let server: RunningServer;
  before(async () => {
    // --max-queue 1: one grammar compiles and one waits; more get 429.
    server = await startTestServer({ maxQueue: 1 });
  });
  after(async () => server.close());

  it('answers a flood of distinct schemas with some 429s (Retry-After), never hangs, and keeps serving', async () => {
    const flood = Array.from({ length: 12 }, (_, i) => completions(server, { response_format: { type: 'json_schema', json_schema: { name: `s${i}`, schema: schemaOfSize(400, `f${i}_`) } } }));
    const statuses: number[] = [];
    for (const res of await Promise.all(flood)) {
      statuses.push(res.status);
      if (res.status === 429) {
        assert.equal(res.headers.get('retry-after'), '1');
        assert.equal((await assertOpenAIError(res, 429)).code, 'queue_full');
      } else await okJson(res);
    }
    assert.ok(statuses.includes(429), `statuses: ${statuses.join(', ')}`);
    assert.ok(statuses.includes(200), `statuses: ${statuses.join(', ')}`);
    await okJson(completions(server, { max_tokens: 4 }));
    assert.equal((await fetch(server.url + '/health')).status, 200);
    const m = await scrape(server.url);
    assert.equal(m.get('mop_grammar_compile_failures_total{model="stories260K",reason="queue_full"}'), statuses.filter((s) => s === 429).length);
  });
});
