/**
 * Chat templates that render tools, one per tool-call format, written after the templates the
 * checkpoints ship (Qwen 2.5's Hermes-style `<tool_call>`, Llama 3.1's JSON with "parameters",
 * Mistral's `[AVAILABLE_TOOLS]` / `[TOOL_CALLS]`), trimmed to what the tests exercise: the tools
 * block, assistant tool calls and tool results.
 */

export const HERMES_TEMPLATE =
  "{%- if tools %}<|im_start|>system\n# Tools\n<tools>" +
  "{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n</tools>\n" +
  'Call as <tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n{%- endif %}' +
  '{%- for message in messages %}' +
  "{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant\n{{ message.content }}" +
  '{%- for tool_call in message.tool_calls %}\n<tool_call>\n{"name": "{{ tool_call.function.name }}", "arguments": {{ tool_call.function.arguments | tojson }}}\n</tool_call>{%- endfor %}<|im_end|>\n' +
  "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n" +
  '{%- else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endif %}' +
  '{%- endfor %}' +
  "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}";

export const LLAMA31_TEMPLATE =
  '{%- if tools %}<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nAnswer {"name": name, "parameters": arguments}\n' +
  '{%- for t in tools %}{{ t | tojson }}\n\n{%- endfor %}<|eot_id|>{%- endif %}' +
  '{%- for message in messages %}' +
  "{%- if message.role == 'assistant' and message.tool_calls %}<|start_header_id|>assistant<|end_header_id|>\n\n" +
  '{%- for tc in message.tool_calls %}{"name": "{{ tc.function.name }}", "parameters": {{ tc.function.arguments | tojson }}}{%- endfor %}<|eot_id|>' +
  "{%- elif message.role == 'tool' %}<|start_header_id|>ipython<|end_header_id|>\n\n{{ message.content }}<|eot_id|>" +
  '{%- else %}<|start_header_id|>{{ message.role }}<|end_header_id|>\n\n{{ message.content | trim }}<|eot_id|>{%- endif %}' +
  '{%- endfor %}' +
  '{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}';

export const MISTRAL_TEMPLATE =
  '{%- for message in messages %}' +
  "{%- if message.role == 'user' %}{%- if loop.last and tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{%- endif %}[INST]{{ message.content }}[/INST]" +
  "{%- elif message.role == 'assistant' and message.tool_calls %}[TOOL_CALLS][" +
  '{%- for tc in message.tool_calls %}{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}, "id": "{{ tc.id }}"}{%- if not loop.last %}, {% endif %}{%- endfor %}]{{ eos_token }}' +
  "{%- elif message.role == 'tool' %}[TOOL_RESULTS]{\"content\": {{ message.content | tojson }}, \"call_id\": \"{{ message.tool_call_id }}\"}[/TOOL_RESULTS]" +
  "{%- elif message.role == 'assistant' %}{{ message.content }}{{ eos_token }}{%- endif %}" +
  '{%- endfor %}';
