import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, okJson, postJson, startTestServer } from './helpers/server.ts';

interface Choice {
  text?: string;
  message?: { content: string };
  finish_reason: string;
  logprobs: unknown;
}
interface Answer {
  choices: Choice[];
}

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 16 },
    age: { type: 'integer', minimum: 0, maximum: 150 },
    pet: { enum: ['cat', 'dog', 'bird'] },
    happy: { type: 'boolean' },
    friends: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 3 },
  },
  required: ['name', 'age', 'pet', 'happy'],
  additionalProperties: false,
};

const textOf = (c: Choice): string => c.text ?? c.message!.content;

describe('structured outputs over HTTP (bundled model)', () => {
  let server: RunningServer;
  const completions = (body: object) => postJson(server.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 120, ...body });
  const chat = (body: object) => postJson(server.url + '/v1/chat/completions', { messages: [{ role: 'user', content: 'Tell me about Lily.' }], max_tokens: 120, ...body });

  before(async () => {
    server = await startTestServer({ maxBatch: 8 });
  });
  after(async () => server.close());

  it('with response_format json_schema, 100 seeded samples at temperature 1 all parse and validate against the schema', async () => {
    const validate = new Ajv().compile(PERSON);
    const response_format = { type: 'json_schema', json_schema: { name: 'person', schema: PERSON, strict: true } };
    const outputs: string[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const answers = await Promise.all([
        okJson<Answer>(completions({ temperature: 1, seed: batch, n: 5, response_format })),
        okJson<Answer>(chat({ temperature: 1, seed: 1000 + batch, n: 5, response_format })),
      ]);
      for (const a of answers) for (const c of a.choices) {
        assert.equal(c.finish_reason, 'stop', textOf(c));
        outputs.push(textOf(c));
      }
    }
    assert.equal(outputs.length, 100);
    for (const text of outputs) {
      const value: unknown = JSON.parse(text);
      assert.ok(validate(value), `${text}: ${JSON.stringify(validate.errors)}`);
      // On one line with vLLM's separators, properties in the schema's order.
      assert.ok(!text.includes('\n') && text.startsWith('{"name": "'), text);
      assert.match(text, /", "age": \d+, "pet": "/);
    }
  });

  it('constrains with vLLM structured_outputs and the guided_* fields on both endpoints', async () => {
    const cases: [object, (s: string, finish: string) => boolean][] = [
      [{ structured_outputs: { regex: '[0-9]{3}-[a-z]{2,5}' } }, (s) => /^[0-9]{3}-[a-z]{2,5}$/.test(s)],
      [{ guided_regex: '(yes|no)!' }, (s) => s === 'yes!' || s === 'no!'],
      [{ structured_outputs: { choice: ['red', 'green', 'blue "sky"'] } }, (s) => ['red', 'green', 'blue "sky"'].includes(s)],
      [{ guided_choice: ['alpha', 'beta'] }, (s) => s === 'alpha' || s === 'beta'],
      [{ structured_outputs: { grammar: 'root ::= "A" [0-9] [0-9]? " " ("x" | "yz")' } }, (s) => /^A[0-9]{1,2} (x|yz)$/.test(s)],
      [{ guided_grammar: 'root ::= ("ab")+ "." ' }, (s) => /^(ab)+\.$/.test(s)],
      [{ guided_json: JSON.stringify({ type: 'object', properties: { k: { type: 'boolean' } }, required: ['k'] }) }, (s) => typeof JSON.parse(s).k === 'boolean'],
      [{ structured_outputs: { json: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 }, minItems: 1, maxItems: 3 } } }, (s) => Array.isArray(JSON.parse(s))],
      // Any object: its strings are unbounded, so a choice may end by length, as a valid prefix.
      [{ response_format: { type: 'json_object' } }, (s, finish) => s.startsWith('{') && (finish === 'length' || typeof JSON.parse(s) === 'object')],
    ];
    for (const [fields, ok] of cases) {
      for (const send of [completions, chat]) {
        const a = await okJson<Answer>(send({ temperature: 1, seed: 7, n: 2, ...fields, max_tokens: 200 }));
        for (const c of a.choices) assert.ok(ok(textOf(c), c.finish_reason), `${JSON.stringify(fields)} → ${JSON.stringify(textOf(c))} (${c.finish_reason})`);
      }
    }
  });

  it('streams constrained choices (n > 1, logprobs, stop sequences) whose deltas join into valid output', async () => {
    const res = await completions({ stream: true, n: 3, temperature: 1, seed: 3, logprobs: 2, stop: ['zzz'], guided_json: { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['a'] } });
    assert.equal(res.status, 200);
    const texts = ['', '', ''];
    const finish: string[] = [];
    for (const line of (await res.text()).split('\n')) {
      if (!line.startsWith('data: {')) continue;
      const chunk = JSON.parse(line.slice(6)) as { choices: (Choice & { index: number })[] };
      for (const c of chunk.choices) {
        texts[c.index] += c.text ?? '';
        if (c.finish_reason) finish[c.index] = c.finish_reason;
      }
    }
    assert.deepEqual(finish, ['stop', 'stop', 'stop']);
    for (const t of texts) assert.ok(Number.isInteger(JSON.parse(t).a), t);
  });

  it('refuses a bad schema, regex or grammar with a 400 naming the field, and two constraints at once', async () => {
    const bad: [object, string][] = [
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'objectx' } } } }, 'response_format.json_schema.schema'],
      [{ guided_json: '{"type": ' }, 'guided_json'],
      [{ guided_regex: '[a-' }, 'guided_regex'],
      [{ structured_outputs: { regex: '(ab' } }, 'structured_outputs.regex'],
      [{ guided_grammar: 'root ::= "a" |' }, 'guided_grammar'],
      [{ structured_outputs: { grammar: 'start ::= "a"' } }, 'structured_outputs.grammar'],
      [{ guided_choice: [] }, 'guided_choice'],
      [{ response_format: { type: 'xml' } }, 'response_format.type'],
      [{ guided_regex: 'a', guided_choice: ['b'] }, 'guided_choice'],
      [{ response_format: { type: 'json_object' }, structured_outputs: { regex: 'a' } }, 'structured_outputs.regex'],
    ];
    for (const [fields, param] of bad) {
      for (const send of [completions, chat]) {
        const e = await assertOpenAIError(await send(fields), 400, param);
        assert.ok(e.message.length > 10, e.message);
      }
    }
    const e = await assertOpenAIError(await completions({ guided_grammar: 'root ::= "a" |' }), 400, 'guided_grammar');
    assert.match(e.message, /EBNF parser error/);
    // Still serving.
    const ok = await okJson<Answer>(completions({ guided_choice: ['fine'], temperature: 0 }));
    assert.equal(ok.choices[0]!.text, 'fine');
  });
});
