import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import OpenAI from 'openai';
import type { RunningServer } from '../../src/server/main.ts';
import { assertOpenAIError, postJson, startTestServer } from './helpers/server.ts';
import { HERMES_TEMPLATE, LLAMA31_TEMPLATE, MISTRAL_TEMPLATE } from './helpers/tool-templates.ts';

// Small: the bundled model's context is 512 tokens, and JSON is mostly one token per byte to it.
const WEATHER = { type: 'object', properties: { city: { enum: ['Oslo', 'Lima'] } }, required: ['city'] };
const TIME = { type: 'object', properties: { zone: { type: 'string', maxLength: 3 } }, required: ['zone'] };

const tools: OpenAI.Chat.ChatCompletionTool[] = [
  { type: 'function', function: { name: 'weather', parameters: WEATHER } },
  { type: 'function', function: { name: 'time', parameters: TIME } },
];
const ajv = new Ajv();
const validators: Record<string, ReturnType<typeof ajv.compile>> = { weather: ajv.compile(WEATHER), time: ajv.compile(TIME) };

function assertValidCall(call: { id?: string; type?: string; function?: { name?: string; arguments?: string } }): string {
  assert.match(call.id ?? '', /^call_[0-9a-f]{24}$/);
  assert.equal(call.type, 'function');
  const name = call.function!.name!;
  const validate = validators[name];
  assert.ok(validate, `unknown tool ${name}`);
  assert.ok(validate(JSON.parse(call.function!.arguments!)), `${name}(${call.function!.arguments}): ${JSON.stringify(validate.errors)}`);
  return name;
}

const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Oslo?' }];

for (const [format, template] of [
  ['Hermes <tool_call>', HERMES_TEMPLATE],
  ['Llama 3.1 JSON', LLAMA31_TEMPLATE],
  ['Mistral [TOOL_CALLS]', MISTRAL_TEMPLATE],
] as const) {
  describe(`tool calls through the official openai client: ${format} template`, () => {
    let server: RunningServer;
    let client: OpenAI;
    before(async () => {
      server = await startTestServer({ maxBatch: 4, chatTemplate: template });
      client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'x', maxRetries: 0 });
    });
    after(async () => server.close());

    it('answers tool_choice "required" with one valid call and finish_reason tool_calls', async () => {
      for (let seed = 0; seed < 4; seed++) {
        const r = await client.chat.completions.create({ model: 'stories260K', messages, tools, tool_choice: 'required', temperature: 1, seed, max_tokens: 76 });
        const c = r.choices[0]!;
        assert.equal(c.finish_reason, 'tool_calls');
        assert.equal(c.message.content, null);
        assert.equal(c.message.tool_calls?.length, 1);
        assertValidCall(c.message.tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall);
      }
    });

    it('calls the named function, and streams the call as id + name then arguments deltas', async () => {
      const named = { type: 'function', function: { name: 'time' } } as const;
      const r = await client.chat.completions.create({ model: 'stories260K', messages, tools, tool_choice: named, temperature: 1, seed: 5, max_tokens: 76 });
      assert.equal(assertValidCall(r.choices[0]!.message.tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall), 'time');

      const stream = await client.chat.completions.create({ model: 'stories260K', messages, tools, tool_choice: named, temperature: 1, seed: 5, max_tokens: 76, stream: true });
      const call: { id?: string; type?: string; function: { name?: string; arguments: string } } = { function: { arguments: '' } };
      let finish: string | null = null;
      let content = '';
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (!choice) continue;
        content += choice.delta.content ?? '';
        for (const d of choice.delta.tool_calls ?? []) {
          assert.equal(d.index, 0);
          if (d.id) call.id = d.id;
          if (d.type) call.type = d.type;
          if (d.function?.name) call.function.name = d.function.name;
          call.function.arguments += d.function?.arguments ?? '';
        }
        finish = choice.finish_reason ?? finish;
      }
      assert.equal(content, '');
      assert.equal(finish, 'tool_calls');
      assert.equal(assertValidCall(call), 'time');
    });

    it('accepts a conversation that carries the call and its tool result back', async () => {
      const first = await client.chat.completions.create({ model: 'stories260K', messages, tools, tool_choice: 'required', temperature: 0, max_tokens: 76 });
      const call = first.choices[0]!.message.tool_calls![0]!;
      const r = await client.chat.completions.create({
        model: 'stories260K',
        messages: [...messages, first.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: '{"sky": "sun"}' }, { role: 'user', content: 'Thanks!' }],
        // "none": the tools stay out of the prompt (the bundled model's context is short); the call and its result go in.
        tools,
        tool_choice: 'none',
        temperature: 0,
        max_tokens: 8,
      });
      assert.equal(r.choices.length, 1);
      assert.ok(['stop', 'length'].includes(r.choices[0]!.finish_reason));
      assert.equal(r.choices[0]!.message.tool_calls, undefined);
    });

    it('refuses tool requests it cannot honour with a 400 naming the field', async () => {
      const chat = (body: object) => postJson(server.url + '/v1/chat/completions', { messages, max_tokens: 4, ...body });
      await assertOpenAIError(await chat({ tool_choice: 'required' }), 400, 'tool_choice');
      await assertOpenAIError(await chat({ tools, tool_choice: { type: 'function', function: { name: 'nope' } } }), 400, 'tool_choice.function.name');
      await assertOpenAIError(await chat({ tools: [{ type: 'function', function: { name: 'bad name!' } }] }), 400, 'tools[0].function.name');
      await assertOpenAIError(await chat({ tools, tool_choice: 'required', response_format: { type: 'json_object' } }), 400, 'tool_choice');
      await assertOpenAIError(await chat({ tools: [tools[0], tools[0]] }), 400, 'tools[1].function.name');
      const badArgs = [...messages, { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'time', arguments: '{not json' } }] }];
      await assertOpenAIError(await chat({ tools, messages: badArgs }), 400, 'messages[1].tool_calls[0].function.arguments');
    });
  });
}

describe('tools on a template that renders none', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => server.close());

  it('is a 400 on tools saying what to do, and tool_choice "none" ignores them', async () => {
    const chat = (body: object) => postJson(server.url + '/v1/chat/completions', { messages, max_tokens: 4, ...body });
    const e = await assertOpenAIError(await chat({ tools }), 400, 'tools');
    assert.match(e.message, /--chat-template/);
    assert.equal((await chat({ tools, tool_choice: 'none' })).status, 200);
  });
});
