/**
 * Chat templates as checkpoints ship them (ChatML as Qwen's, Llama-2's), and a small ChatML
 * byte-level BPE tokenizer.json with `<|im_start|>` / `<|im_end|>` as special added tokens.
 */
import { BYTE_LEVEL_CHAR_TO_BYTE, TokenizerJsonTokenizer } from '../../../src/runtime/tokenizer/tokenizer-json.ts';

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json chat_template. */
export const LLAMA2_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  '{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}' +
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

export const ENDOFTEXT = 300;
export const IM_START = 301;
export const IM_END = 302;

const byteChars = [...BYTE_LEVEL_CHAR_TO_BYTE].sort((a, b) => a[1] - b[1]).map(([ch]) => ch);

/** A GPT-2 style byte-level BPE tokenizer.json (as Qwen's) with ChatML's special tokens. */
export function chatmlTokenizerJson(): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const merges = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or', 'l d', 'Ġwor ld', '< |', 'i m', '| >'];
  const vocab: Record<string, number> = {};
  byteChars.forEach((ch, i) => (vocab[ch] = i));
  merges.forEach((m, i) => (vocab[m.replace(' ', '')] = 256 + i));
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(ENDOFTEXT, '<|endoftext|>'), special(IM_START, '<|im_start|>'), special(IM_END, '<|im_end|>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  return { json, config: { bos_token: null, eos_token: '<|im_end|>', add_bos_token: false, chat_template: CHATML_TEMPLATE } };
}

export function chatmlTokenizer(): TokenizerJsonTokenizer {
  const { json, config } = chatmlTokenizerJson();
  return new TokenizerJsonTokenizer({ kind: 'tokenizer.json', json, config, origin: 'ChatML fixture' });
}
