/**
 * A minimal Server-Sent Events parser (the subset OpenAI-style servers use): feed it decoded text
 * as it arrives, in chunks split anywhere, and it returns the `data` payload of every event a
 * chunk completed. Lines end in \n, \r\n or \r; an event ends at a blank line; several `data:`
 * lines of one event are joined with \n; comment lines (`:`) and other fields are ignored.
 */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private hasData = false;

  push(text: string): string[] {
    this.buffer += text;
    const events: string[] = [];
    let start = 0;
    for (;;) {
      let end = -1;
      let next = -1;
      for (let i = start; i < this.buffer.length; i++) {
        const c = this.buffer.charCodeAt(i);
        if (c === 10) {
          end = i;
          next = i + 1;
          break;
        }
        if (c === 13) {
          // A \r at the very end may be the first half of \r\n: wait for the next chunk.
          if (i + 1 >= this.buffer.length) break;
          end = i;
          next = this.buffer.charCodeAt(i + 1) === 10 ? i + 2 : i + 1;
          break;
        }
      }
      if (end < 0) break;
      this.line(this.buffer.slice(start, end), events);
      start = next;
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /** The stream ended: a last line without its terminator, and an event without its blank line, still count. */
  end(): string[] {
    const events: string[] = [];
    if (this.buffer !== '') this.line(this.buffer.replace(/\r$/, ''), events);
    this.buffer = '';
    if (this.hasData) events.push(this.data.join('\n'));
    this.data = [];
    this.hasData = false;
    return events;
  }

  private line(line: string, events: string[]): void {
    if (line === '') {
      if (this.hasData) events.push(this.data.join('\n'));
      this.data = [];
      this.hasData = false;
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== 'data') return;
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.data.push(value);
    this.hasData = true;
  }
}
