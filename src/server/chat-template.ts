/**
 * Chat messages → prompt text, with the checkpoint's Jinja chat template (tokenizer_config.json /
 * GGUF `tokenizer.chat_template`) rendered by @huggingface/jinja. A template given on the command
 * line wins; a checkpoint without one (llama2.c files like the bundled model) gets a plain
 * "role: content" transcript, and the start-up log says so (vLLM refuses instead; a default keeps
 * `mop serve` usable out of the box).
 */
import { existsSync, readFileSync } from 'node:fs';
import { Template } from '@huggingface/jinja';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { invalidRequest } from './errors.ts';
import type { ChatMessage } from './protocol.ts';

/** One line per message, then the cue for the assistant's turn. */
export const DEFAULT_CHAT_TEMPLATE =
  '{% for message in messages %}{{ message.role }}: {{ message.content }}\n{% endfor %}' + '{% if add_generation_prompt %}assistant:{% endif %}';

export type ChatTemplateSource = 'configured' | 'checkpoint' | 'default';

export interface ChatTemplate {
  source: ChatTemplateSource;
  /** The template text (logged at start-up by source, not content). */
  text: string;
  /** Prompt token ids for a conversation, ending with the assistant cue. */
  encode(messages: readonly ChatMessage[], tokenizer: Tokenizer): number[];
}

export class ChatTemplateError extends Error {
  override name = 'ChatTemplateError';
}

/**
 * `configured`: a file path, or the template text itself (anything with `{{` or `{%`), as vLLM's
 * --chat-template accepts either.
 */
export function loadChatTemplate(configured: string | undefined, checkpoint: string | undefined): ChatTemplate {
  if (configured !== undefined) {
    let text: string;
    if (existsSync(configured)) text = readFileSync(configured, 'utf8');
    else if (/\{\{|\{%/.test(configured)) text = configured;
    else throw new ChatTemplateError(`--chat-template / MOP_CHAT_TEMPLATE: no file ${configured} (and it is not a Jinja template)`);
    return compile(text, 'configured');
  }
  if (checkpoint) return compile(checkpoint, 'checkpoint');
  return compile(DEFAULT_CHAT_TEMPLATE, 'default');
}

function compile(text: string, source: ChatTemplateSource): ChatTemplate {
  let template: Template;
  try {
    template = new Template(text);
  } catch (e) {
    throw new ChatTemplateError(`the ${source} chat template does not parse: ${(e as Error).message}`);
  }
  return {
    source,
    text,
    encode(messages, tokenizer) {
      const bos = tokenizer.bosTokenId === undefined ? '' : tokenizer.tokenText(tokenizer.bosTokenId);
      const eos = tokenizer.eosTokenIds[0] === undefined ? '' : tokenizer.tokenText(tokenizer.eosTokenIds[0]);
      let rendered: string;
      try {
        rendered = template.render({
          messages: messages.map((m) => ({ role: m.role, content: messageText(m), ...(m.name !== undefined && { name: m.name }) })),
          add_generation_prompt: true,
          bos_token: bos,
          eos_token: eos,
        });
      } catch (e) {
        // Templates reject conversations they cannot express (raise_exception), e.g. roles out of turn.
        throw invalidRequest(`The chat template cannot render these messages: ${(e as Error).message}`, 'messages');
      }
      // Templates write BOS as text; our tokenizers do not parse special tokens from text, so
      // strip it and let encode() add the real id (LLaMA-family models all want one).
      if (bos && rendered.startsWith(bos)) rendered = rendered.slice(bos.length);
      return tokenizer.encode(rendered, { addBos: true });
    },
  };
}

/** A message's text: a string, or its text parts concatenated; null content is empty. */
export function messageText(m: ChatMessage): string {
  if (typeof m.content === 'string') return m.content;
  if (!m.content) return '';
  return m.content.map((p) => p.text).join('');
}
