/**
 * Chat messages → token ids, with a checkpoint's Jinja chat template (tokenizer_config.json / GGUF
 * `tokenizer.chat_template`) rendered by @huggingface/jinja. The one home of template rendering:
 * the server encodes prompts with it, MoP renders chat records of recovery and calibration text.
 * A template given by the operator wins; a checkpoint without one (llama2.c files like the bundled
 * model) gets a plain "role: content" transcript.
 *
 * The template's own special tokens (`<|im_start|>`, a mid-conversation `</s><s>`…) become control
 * tokens; the same texts inside a message's content or name stay text, so a user cannot close
 * their turn and open a system one by typing it. So do those in the tools and tool calls a
 * conversation carries (the template's `tools` variable, each message's `tool_calls`).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { Template } from '@huggingface/jinja';
import type { TextSpan, Tokenizer } from './types.ts';

/** One line per message, then the cue for the assistant's turn. */
export const DEFAULT_CHAT_TEMPLATE =
  '{% for message in messages %}{{ message.role }}: {{ message.content }}\n{% endfor %}' + '{% if add_generation_prompt %}assistant:{% endif %}';

export type ChatTemplateSource = 'configured' | 'checkpoint' | 'default';

/** A message as a template sees it: its text already joined. */
export interface TemplateMessage {
  role: string;
  content: string;
  name?: string;
  /** An assistant's calls, as Hugging Face templates take them (`function.arguments` an object). */
  tool_calls?: unknown[];
  /** A tool message: the call it answers. */
  tool_call_id?: string;
}

export interface RenderOptions {
  /** End with the cue for the assistant's turn (a prompt); false for a whole conversation (training text). */
  addGenerationPrompt: boolean;
  /** The tools offered (OpenAI's `tools`), for the template's `tools` variable. */
  tools?: readonly unknown[];
}

export interface ChatTemplate {
  source: ChatTemplateSource;
  /** The template text (logged at start-up by source, not content). */
  text: string;
  /** Token ids for a conversation, BOS first; throws ChatTemplateRenderError for one the template refuses. */
  encode(messages: readonly TemplateMessage[], tokenizer: Tokenizer, options?: RenderOptions): number[];
}

/** A template that cannot be loaded or does not parse. */
export class ChatTemplateError extends Error {
  override name = 'ChatTemplateError';
}

/** A conversation the template refuses to render (raise_exception), e.g. roles out of turn. */
export class ChatTemplateRenderError extends Error {
  override name = 'ChatTemplateRenderError';
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
    encode(messages, tokenizer, options = { addGenerationPrompt: true }) {
      const bos = tokenizer.bosTokenId === undefined ? '' : tokenizer.tokenText(tokenizer.bosTokenId);
      const eos = tokenizer.eosTokenIds[0] === undefined ? '' : tokenizer.tokenText(tokenizer.eosTokenIds[0]);
      const client = [...messages.flatMap((m) => [m.content, ...(m.name !== undefined ? [m.name] : [])]), ...stringsIn([messages.map((m) => [m.tool_calls, m.tool_call_id]), options.tools])];
      const marks = new SpecialTextMarks(tokenizer.specialTokenTexts, client);
      let rendered: string;
      try {
        rendered = template.render({
          messages: messages.map((m) => ({
            role: m.role,
            content: marks.mark(m.content),
            ...(m.name !== undefined && { name: marks.mark(m.name) }),
            ...(m.tool_calls !== undefined && { tool_calls: marks.markDeep(m.tool_calls) }),
            ...(m.tool_call_id !== undefined && { tool_call_id: marks.mark(m.tool_call_id) }),
          })),
          ...(options.tools && options.tools.length > 0 && { tools: marks.markDeep(options.tools) }),
          add_generation_prompt: options.addGenerationPrompt,
          bos_token: bos,
          eos_token: eos,
        });
      } catch (e) {
        throw new ChatTemplateRenderError(`The chat template cannot render these messages: ${(e as Error).message}`);
      }
      // A leading BOS the template writes is left to encode() to add, so there is exactly one
      // also where the tokenizer does not know the BOS text as a special token (LLaMA-family
      // models all want one).
      if (bos && rendered.startsWith(bos)) rendered = rendered.slice(bos.length);
      return tokenizer.encode(marks.spans(rendered), { addBos: true });
    },
  };
}

/**
 * Client strings go into the template with each special token's text replaced by a mark (private-
 * use characters around a random number no client string contains), so the template's own
 * logic (`trim`, `in`, `split`…) sees the same text as ever for an ordinary message; in the
 * rendered prompt each mark becomes a `text` span holding the original special token's text,
 * everything else a `parse` span.
 */
class SpecialTextMarks {
  private readonly texts: readonly string[];
  private readonly find: RegExp | undefined;
  private readonly nonce: string;
  private readonly markPattern: RegExp;

  constructor(specialTokenTexts: readonly string[], clientStrings: readonly string[]) {
    // Longest first: the alternation then takes the longest special text at each position.
    this.texts = [...specialTokenTexts].filter((t) => t.length > 0).sort((a, b) => b.length - a.length);
    this.find = this.texts.length > 0 ? new RegExp(this.texts.map(escapeRegExp).join('|'), 'g') : undefined;
    let nonce: string;
    do nonce = BigInt('0x' + randomBytes(8).toString('hex')).toString();
    while (clientStrings.some((s) => s.includes(nonce)));
    this.nonce = nonce;
    this.markPattern = new RegExp(`\uE000${nonce}\\.(\\d+)\uE001`, 'g');
  }

  mark(s: string): string {
    if (!this.find) return s;
    return s.replace(this.find, (t) => `\uE000${this.nonce}.${this.texts.indexOf(t)}\uE001`);
  }

  /** Every string in a JSON-like value marked, object keys included. */
  markDeep<T>(value: T): T {
    if (typeof value === 'string') return this.mark(value) as T;
    if (Array.isArray(value)) return value.map((v: unknown) => this.markDeep(v)) as T;
    if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [this.mark(k), this.markDeep(v)])) as T;
    return value;
  }

  spans(rendered: string): TextSpan[] {
    const out: TextSpan[] = [];
    let at = 0;
    for (const m of rendered.matchAll(this.markPattern)) {
      out.push({ text: rendered.slice(at, m.index), specialTokens: 'parse' });
      out.push({ text: this.texts[Number(m[1])] ?? '', specialTokens: 'text' });
      at = m.index + m[0].length;
    }
    out.push({ text: rendered.slice(at), specialTokens: 'parse' });
    return out;
  }
}

/** Every string in a JSON-like value, object keys included. */
function stringsIn(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(stringsIn);
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => [k, ...stringsIn(v)]);
  return [];
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
