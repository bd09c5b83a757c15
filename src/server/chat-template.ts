/**
 * The server's side of chat templates: OpenAI chat messages (text parts joined) rendered with the
 * one template renderer (src/runtime/tokenizer/chat-template.ts, which MoP's chat-record recovery
 * text uses too), a conversation the template refuses answered 400 on `messages`.
 */
import {
  type ChatTemplateSource,
  ChatTemplateRenderError,
  loadChatTemplate as loadTemplate,
  type RenderOptions,
  type TemplateMessage,
} from '../runtime/tokenizer/chat-template.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import { invalidRequest } from './errors.ts';
import type { ChatMessage } from './protocol.ts';
import { type ToolCallFormat, toolCallFormatOf } from './tool-calls.ts';

export { ChatTemplateError, type ChatTemplateSource, DEFAULT_CHAT_TEMPLATE } from '../runtime/tokenizer/chat-template.ts';

export interface ChatTemplate {
  source: ChatTemplateSource;
  /** The template text (logged at start-up by source, not content). */
  text: string;
  /** The tool-call format the template teaches (from its text); undefined when it renders no tools. */
  toolFormat: ToolCallFormat | undefined;
  /** Prompt token ids for a conversation, ending with the assistant cue unless `options` say otherwise (POST /tokenize); `options.tools` fill the template's `tools`. */
  encode(messages: readonly ChatMessage[], tokenizer: Tokenizer, options?: RenderOptions): number[];
}

/** See the runtime's loadChatTemplate: a configured template (file or text) wins over the checkpoint's. */
export function loadChatTemplate(configured: string | undefined, checkpoint: string | undefined): ChatTemplate {
  const template = loadTemplate(configured, checkpoint);
  return {
    source: template.source,
    text: template.text,
    toolFormat: toolCallFormatOf(template.text),
    encode(messages, tokenizer, options = { addGenerationPrompt: true }) {
      try {
        return template.encode(messages.map(templateMessage), tokenizer, options);
      } catch (e) {
        if (e instanceof ChatTemplateRenderError) throw invalidRequest(e.message, 'messages');
        throw e;
      }
    },
  };
}

function templateMessage(m: ChatMessage, index: number): TemplateMessage {
  return {
    role: m.role,
    content: messageText(m),
    ...(m.name !== undefined && { name: m.name }),
    ...(m.tool_calls && m.tool_calls.length > 0 && { tool_calls: templateToolCalls(m.tool_calls, index) }),
    ...(m.tool_call_id != null && { tool_call_id: m.tool_call_id }),
  };
}

/**
 * An assistant's tool calls as templates take them: `arguments` parsed into an object (Hugging
 * Face templates write it with `tojson`, as vLLM hands it over); arguments that are not JSON: 400.
 */
function templateToolCalls(calls: NonNullable<ChatMessage['tool_calls']>, index: number): unknown[] {
  return calls.map((call, j) => {
    let args: unknown;
    try {
      args = JSON.parse(call.function.arguments);
    } catch {
      throw invalidRequest('The arguments of a tool call must be JSON text (as the answer that made it returned them).', `messages[${index}].tool_calls[${j}].function.arguments`);
    }
    return { id: call.id, type: 'function', function: { name: call.function.name, arguments: args } };
  });
}

/** A message's text: a string, or its text parts concatenated; null content is empty. */
export function messageText(m: ChatMessage): string {
  if (typeof m.content === 'string') return m.content;
  if (!m.content) return '';
  return m.content.map((p) => p.text).join('');
}
