/**
 * One streamed choice's text split into content (sent as it comes) and tool calls (held from the
 * point a call starts, parsed when the choice ends). Text that may still turn out to be the start
 * of a call (`<tool_ca…` at the end of what has come so far; for Llama 3.1 JSON, leading
 * whitespace) is held back until it is decided, so a call's markup never reaches `content`.
 */
import { markerLength, parseToolCalls, type ToolCall, toolCallStart } from './tool-calls.ts';
import type { ToolUse } from './tool-calls-request.ts';

export class ToolCallStream {
  /** All text of the choice so far, with markup that came as control tokens spelled out. */
  private text = '';
  /** Where in `text` spelled-out markup stands: the parser reads it, content never carries it. */
  private readonly spelled: [start: number, end: number][] = [];
  /** How much of `text` has been sent as content. */
  private sent = 0;
  /** Where the call starts in `text`, once it has. */
  private callAt = -1;

  constructor(private readonly tools: ToolUse) {}

  /**
   * Feed the next piece of text, and the markup its token stands for when it is a control token
   * (which decodes to no text); returns the content that can be sent now (possibly '').
   */
  push(piece: string, marker?: string): string {
    // A marker can only start in the new text or in its last characters before it: never search the whole answer again.
    const from = Math.max(0, this.text.length - markerLength(this.tools.format) + 1);
    this.text += piece;
    if (marker) {
      this.spelled.push([this.text.length, this.text.length + marker.length]);
      this.text += marker;
    }
    if (this.callAt >= 0) return '';
    const at = toolCallStart(this.tools.format, this.text, from);
    if (at >= 0) {
      this.callAt = at;
      return this.take(at);
    }
    return this.take(this.text.length - this.undecided());
  }

  /** The choice has ended (with `last`, its held-back text): the content left to send, and the calls. */
  finish(last: string): { content: string; toolCalls: ToolCall[] } {
    this.text += last;
    const at = this.callAt >= 0 ? this.callAt : toolCallStart(this.tools.format, this.text);
    if (at >= 0) {
      const parsed = parseToolCalls(this.tools.format, this.text.slice(at), this.tools.functions, this.tools.parallel);
      if (parsed.toolCalls.length > 0) return { content: this.take(at), toolCalls: parsed.toolCalls };
    }
    return { content: this.take(this.text.length), toolCalls: [] };
  }

  /** Content from `sent` up to `end` (spelled-out markup left out), now counted as sent. */
  private take(end: number): string {
    if (end <= this.sent) return '';
    let out = '';
    let at = this.sent;
    for (const [a, b] of this.spelled) {
      if (b <= at || a >= end) continue;
      out += this.text.slice(at, Math.max(at, a));
      at = Math.max(at, b);
    }
    if (at < end) out += this.text.slice(at, end);
    this.sent = end;
    return out;
  }

  /** How many characters at the end could still begin a call. */
  private undecided(): number {
    if (this.tools.format === 'llama3-json') {
      // A call is the whole answer: while only whitespace (or a prefix of the python tag) came, it may be one.
      const trimmed = this.text.trimStart();
      return trimmed === '' || '<|python_tag|>'.startsWith(trimmed) ? this.text.length - this.sent : 0;
    }
    const marker = this.tools.format === 'hermes' ? '<tool_call>' : '[TOOL_CALLS]';
    for (let n = Math.min(markerLength(this.tools.format) - 1, this.text.length); n > 0; n--) {
      if (marker.startsWith(this.text.slice(this.text.length - n))) return Math.min(n, this.text.length - this.sent);
    }
    return 0;
  }
}
