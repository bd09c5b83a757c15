import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import type { RunningServer } from '../../src/server/main.ts';
import { postJson, startTestServer } from './helpers/server.ts';

/** A small seeded generator (mulberry32), so a failure names a reproducible case. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

/** A random schema with bounded values (so outputs end), `depth` levels of nesting at most. */
function schema(r: Rand, depth: number): Record<string, unknown> {
  const kinds = depth > 0 ? ['integer', 'boolean', 'enum', 'string', 'array', 'object'] : ['integer', 'boolean', 'enum', 'string'];
  switch (pick(r, kinds)) {
    case 'integer': {
      const min = Math.floor(r() * 50) - 10;
      return { type: 'integer', minimum: min, maximum: min + Math.floor(r() * 100) };
    }
    case 'boolean':
      return { type: 'boolean' };
    case 'enum':
      return { enum: ['a', 'bc', 'd e', 'x"y'].slice(0, 1 + Math.floor(r() * 4)) };
    case 'string':
      return { type: 'string', maxLength: 1 + Math.floor(r() * 6) };
    case 'array':
      return { type: 'array', items: schema(r, depth - 1), maxItems: 1 + Math.floor(r() * 3) };
    default: {
      const properties: Record<string, unknown> = {};
      const n = 1 + Math.floor(r() * 3);
      for (let i = 0; i < n; i++) properties[`p${i}`] = schema(r, depth - 1);
      return { type: 'object', properties, required: Object.keys(properties).filter(() => r() < 0.7), additionalProperties: false };
    }
  }
}

/** Ways to break a request's constraint: each must be a 400, never a hang or a dead server. */
const BROKEN: ((r: Rand) => object)[] = [
  () => ({ guided_json: { type: 'objectx' } }),
  (r) => ({ guided_json: JSON.stringify(schema(r, 2)).slice(0, -1) }),
  () => ({ guided_json: { $ref: '#/definitions/missing' } }),
  () => ({ guided_json: { type: 'integer', minimum: 10, maximum: 1 } }),
  () => ({ guided_regex: pick(rng(1), ['(ab', '[z-a]', 'a{3,1}', '*a']) }),
  (r) => ({ guided_regex: pick(r, ['(ab', '[z-a]', '\\', 'a)', '[']) }),
  (r) => ({ guided_grammar: pick(r, ['root ::= "a" |', 'root ::= missing', 'top ::= "a"', 'root ::= [', 'root ::= "a" (']) }),
  (r) => ({ structured_outputs: { grammar: `root ::= ${'('.repeat(1 + Math.floor(r() * 3))}"x"` } }),
];

/** Grammars that parse: alternations, repetitions and character classes of short literals. */
function grammar(r: Rand): string {
  const atom = () => pick(r, ['"a"', '"bc"', '[0-9]', '[a-c]', '"x y"', '"\\""']);
  const term = () => `${atom()}${pick(r, ['', '?', '', '{1,2}'])}`;
  const seq = () => Array.from({ length: 1 + Math.floor(r() * 3) }, term).join(' ');
  return `root ::= ${Array.from({ length: 1 + Math.floor(r() * 3) }, seq).join(' | ')}`;
}

describe('structured outputs, fuzzed (seeded)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ maxBatch: 4 });
  });
  after(async () => server.close());

  it('answers every random schema or grammar, valid or broken, with output that conforms or a 400, and keeps serving', async () => {
    const ajv = new Ajv();
    let served = 0;
    let refused = 0;
    for (let seed = 0; seed < 48; seed++) {
      const r = rng(seed);
      const choice = seed % 4;
      let fields: object;
      let check: ((text: string) => void) | undefined;
      if (choice === 0 || choice === 1) {
        const s = schema(r, 2);
        const validate = ajv.compile(s);
        fields = choice === 0 ? { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: s } } } : { guided_json: JSON.stringify(s) };
        check = (text) => assert.ok(validate(JSON.parse(text)), `seed ${seed}: ${text} against ${JSON.stringify(s)}`);
      } else if (choice === 2) {
        const g = grammar(r);
        fields = { guided_grammar: g };
        check = (text) => assert.ok(text.length > 0, `seed ${seed}: empty output for ${g}`);
      } else fields = pick(r, BROKEN)(r);
      const url = server.url + (seed % 2 ? '/v1/chat/completions' : '/v1/completions');
      const base = seed % 2 ? { messages: [{ role: 'user', content: 'Hi' }] } : { prompt: 'Once upon a time' };
      const res = await postJson(url, { ...base, max_tokens: 80, temperature: 1, seed, ...fields });
      const body = (await res.json()) as { choices?: { text?: string; message?: { content: string }; finish_reason: string }[]; error?: { param: string | null } };
      if (res.status === 400) {
        refused++;
        assert.ok(body.error?.param, `seed ${seed}: a 400 names the field (${JSON.stringify(body)})`);
        continue;
      }
      assert.equal(res.status, 200, `seed ${seed}: ${JSON.stringify(fields)} → ${JSON.stringify(body)}`);
      served++;
      const c = body.choices![0]!;
      if (c.finish_reason === 'stop') check?.(c.text ?? c.message!.content);
    }
    assert.ok(served >= 30 && refused >= 12, `served ${served}, refused ${refused}`);
    const ok = await postJson(server.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 4, temperature: 0 });
    assert.equal(ok.status, 200);
  });
});
