import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Tokenizer } from '../../src/runtime/tokenizer/types.ts';
import { ChatTemplateError, loadChatTemplate } from '../../src/server/chat-template.ts';
import { ApiError } from '../../src/server/errors.ts';

/** Records what the template rendered; "tokens" are the char codes, BOS = 1. */
function recordingTokenizer(): Tokenizer & { seen: { text: string; addBos: boolean | undefined }[] } {
  const seen: { text: string; addBos: boolean | undefined }[] = [];
  return {
    seen,
    vocabSize: 0x10000,
    bosTokenId: 1,
    eosTokenIds: [2],
    specialTokenTexts: ['<s>', '</s>'],
    encode(spans, options) {
      const text = typeof spans === 'string' ? spans : spans.map((s) => s.text).join('');
      seen.push({ text, addBos: options?.addBos });
      return [...(options?.addBos ? [1] : []), ...[...text].map((c) => c.charCodeAt(0))];
    },
    decode: () => '',
    tokenBytes: () => new Uint8Array(),
    tokenText: (id) => (id === 1 ? '<s>' : id === 2 ? '</s>' : String.fromCharCode(id)),
    createDecoder: () => ({ push: () => '', flush: () => '' }),
  };
}

const messages = [
  { role: 'system' as const, content: 'Be brief.' },
  { role: 'user' as const, content: [{ type: 'text' as const, text: 'Hi ' }, { type: 'text' as const, text: 'there' }] },
];

describe('chat templates', () => {
  it('falls back to a plain role: content transcript ending with the assistant cue', () => {
    const t = loadChatTemplate(undefined, undefined);
    assert.equal(t.source, 'default');
    const tok = recordingTokenizer();
    const ids = t.encode(messages, tok);
    assert.equal(tok.seen[0]!.text, 'system: Be brief.\nuser: Hi there\nassistant:');
    assert.equal(ids[0], 1, 'BOS first');
  });

  it("prefers a configured template over the checkpoint's, and strips a BOS the template writes as text", () => {
    const dir = mkdtempSync(join(tmpdir(), 'mop-chat-'));
    const file = join(dir, 'template.jinja');
    writeFileSync(file, "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}");
    const t = loadChatTemplate(file, '{{ "checkpoint" }}');
    assert.equal(t.source, 'configured');
    const tok = recordingTokenizer();
    const ids = t.encode(messages, tok);
    assert.equal(tok.seen[0]!.text, '[system]Be brief.</s>[user]Hi there</s>[assistant]');
    assert.equal(ids.filter((id) => id === 1).length, 1, 'exactly one BOS');
    assert.equal(loadChatTemplate(undefined, '{{ "checkpoint" }}').source, 'checkpoint');
    assert.equal(loadChatTemplate('{% for m in messages %}{{ m.content }}{% endfor %}', undefined).source, 'configured');
  });

  it('reports a template that does not parse, or a missing file, at start-up', () => {
    assert.throws(() => loadChatTemplate('/no/such/template.jinja', undefined), ChatTemplateError);
    assert.throws(() => loadChatTemplate('{% for x %}', undefined), ChatTemplateError);
  });

  it('turns a template refusing the conversation (raise_exception) into a 400 on messages', () => {
    const t = loadChatTemplate("{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with a user message') }}{% endif %}", undefined);
    assert.throws(
      () => t.encode(messages, recordingTokenizer()),
      (e: unknown) => e instanceof ApiError && e.status === 400 && e.param === 'messages' && /must start with a user/.test(e.message),
    );
  });
});
