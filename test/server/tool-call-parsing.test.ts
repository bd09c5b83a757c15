import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseToolCalls, type ToolCallFormat, toolCallFormatOf } from '../../src/server/tool-calls.ts';
import { controlMarker, controlMarkers, toolParseText, type ToolUse } from '../../src/server/tool-calls-request.ts';
import type { GenerationEvent } from '../../src/runtime/engine/sequence.ts';
import { TokenizerJsonTokenizer } from '../../src/runtime/tokenizer/tokenizer-json.ts';
import { chatmlTokenizerJson } from './helpers/chat-fixtures.ts';
import { ToolCallStream } from '../../src/server/tool-calls-stream.ts';
import { HERMES_TEMPLATE, LLAMA31_TEMPLATE, MISTRAL_TEMPLATE } from './helpers/tool-templates.ts';

const functions = [{ name: 'weather' }, { name: 'time' }];
const use = (format: ToolCallFormat, parallel = true): ToolUse => ({ format, functions, parallel, grammar: undefined, markers: new Map() });

/** Each format's rendering of: some content, then calls weather({city: "Oslo"}) and time({}). */
const ANSWERS: Record<ToolCallFormat, string> = {
  hermes: 'Let me check.\n<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n<tool_call>\n{"name": "time", "arguments": {}}\n</tool_call>',
  'llama3-json': '{"name": "weather", "parameters": {"city": "Oslo"}}; {"name": "time", "parameters": {}}',
  mistral: 'Let me check.[TOOL_CALLS][{"name": "weather", "arguments": {"city": "Oslo"}}, {"name": "time", "arguments": {}}]',
};

describe('tool calls in model text', () => {
  it('picks the format from the template text', () => {
    assert.equal(toolCallFormatOf(HERMES_TEMPLATE), 'hermes');
    assert.equal(toolCallFormatOf(LLAMA31_TEMPLATE), 'llama3-json');
    assert.equal(toolCallFormatOf(MISTRAL_TEMPLATE), 'mistral');
    assert.equal(toolCallFormatOf('{% for m in messages %}{{ m.content }}{% endfor %}'), undefined);
  });

  for (const format of ['hermes', 'llama3-json', 'mistral'] as const) {
    it(`parses ${format} calls (all of them, or the first without parallel_tool_calls) and the content before them`, () => {
      const parsed = parseToolCalls(format, ANSWERS[format], functions, true);
      assert.deepEqual(parsed.toolCalls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]), [['weather', { city: 'Oslo' }], ['time', {}]]);
      assert.equal(parsed.content, format === 'llama3-json' ? null : 'Let me check.');
      assert.equal(parseToolCalls(format, ANSWERS[format], functions, false).toolCalls.length, 1);
    });

    it(`leaves ${format} text that is no valid call (unknown name, broken JSON, plain prose) as content`, () => {
      for (const text of [ANSWERS[format].replace('"weather"', '"nope"'), ANSWERS[format].slice(0, -3), 'Once upon a time {there was}']) {
        assert.deepEqual(parseToolCalls(format, text, functions, true), { content: text, toolCalls: [] }, text);
      }
    });

    it(`streams ${format}: content as it comes, never the call's markup, and the calls at the end`, () => {
      const stream = new ToolCallStream(use(format));
      let content = '';
      // One character at a time: the worst case for a marker split across pieces.
      for (const ch of ANSWERS[format]) content += stream.push(ch);
      const end = stream.finish('');
      content += end.content;
      assert.equal(content, format === 'llama3-json' ? '' : 'Let me check.' + (format === 'hermes' ? '\n' : ''));
      assert.deepEqual(end.toolCalls.map((c) => c.function.name), ['weather', 'time']);
    });
  }

  it('streams prose that only looks like the start of a call as content, all of it', () => {
    for (const [format, text] of [['hermes', 'a <tool and <tool_ca'], ['mistral', 'x [TOOL'], ['llama3-json', '  {not json']] as const) {
      const stream = new ToolCallStream(use(format));
      let content = '';
      for (const ch of text) content += stream.push(ch);
      const end = stream.finish('');
      assert.equal(content + end.content, text);
      assert.deepEqual(end.toolCalls, []);
    }
  });
});

describe('tool-call markup the tokenizer has as a control token (Mistral\'s [TOOL_CALLS] decodes to no text)', () => {
  const TOOL_CALLS = 303;
  const tokenizer = (() => {
    const { json, config } = chatmlTokenizerJson();
    (json.added_tokens as unknown[]).push({ id: TOOL_CALLS, content: '[TOOL_CALLS]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    return new TokenizerJsonTokenizer({ kind: 'tokenizer.json', json, config, origin: 'Mistral-like fixture' });
  })();
  const tools: ToolUse = { ...use('mistral'), markers: controlMarkers(tokenizer, 'mistral') };
  /** The answer as the engine's events: content, the control token (no text), the calls' JSON; then the finish. */
  const events = (): GenerationEvent[] => {
    const json = '[{"name": "weather", "arguments": {"city": "Oslo"}}]';
    const text = (t: string): GenerationEvent => ({ type: 'token', token: 65, text: t });
    return [text('Let me check.'), { type: 'token', token: TOOL_CALLS, text: tokenizer.decode([TOOL_CALLS]) }, ...json.match(/.{1,7}/g)!.map(text), { type: 'finish', reason: 'stop', text: '', promptTokens: 4, completionTokens: 9 }];
  };

  it('finds the control token by its id, and only for the format\'s markup', () => {
    assert.equal(tokenizer.decode([TOOL_CALLS]), '');
    assert.deepEqual([...tools.markers], [[TOOL_CALLS, '[TOOL_CALLS]']]);
    assert.deepEqual([...controlMarkers(tokenizer, 'hermes')], []);
  });

  it('reads the call from a whole answer and from a stream, though the marker has no text', () => {
    const whole = events().map((e) => toolParseText(e, tools)).join('');
    const parsed = parseToolCalls('mistral', whole, functions, true);
    assert.deepEqual(parsed.toolCalls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]), [['weather', { city: 'Oslo' }]]);
    assert.equal(parsed.content, 'Let me check.');
    // Without the id, the text alone holds no marker: the call would reach the client as content.
    assert.deepEqual(parseToolCalls('mistral', events().map((e) => e.text).join(''), functions, true).toolCalls, []);
    const stream = new ToolCallStream(tools);
    const evs = events();
    const sent = evs.slice(0, -1).map((e) => stream.push(e.text, controlMarker(e, tools))).join('');
    const end = stream.finish('');
    assert.equal(sent + end.content, 'Let me check.');
    assert.deepEqual(end.toolCalls.map((c) => c.function.name), ['weather']);
  });

  it('a marker with no call after it that parses: the stream\'s content is the text the whole answer has, without the marker', () => {
    const evs: GenerationEvent[] = [
      { type: 'token', token: 65, text: 'Sure. ' },
      { type: 'token', token: TOOL_CALLS, text: '' },
      { type: 'token', token: 66, text: 'no JSON here' },
    ];
    const stream = new ToolCallStream(tools);
    const sent = evs.map((e) => stream.push(e.text, controlMarker(e, tools))).join('');
    const end = stream.finish('');
    assert.deepEqual(end.toolCalls, []);
    assert.equal(sent + end.content, 'Sure. no JSON here');
    assert.equal(parseToolCalls('mistral', evs.map((e) => toolParseText(e, tools)).join(''), functions, true).toolCalls.length, 0);
  });
});
