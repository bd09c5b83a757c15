import type { StreamDecoder } from './types.ts';

/** How a tokenizer's byte stream becomes text; shared by all tokenizer kinds. */
export interface ByteStreamOptions {
  /** The bytes one token contributes (empty for control tokens). */
  tokenBytes: (id: number) => Uint8Array;
  /**
   * Sentencepiece vocabularies prepend a dummy '▁' to the text they encode; when decoding, the first
   * piece's leading space is that prefix, not text, and is dropped.
   */
  stripFirstSpace: boolean;
  /** A token that leaves the strip pending (BOS: the first piece after it still loses its space). */
  bosTokenId: number | undefined;
}

/**
 * Accumulates token bytes and emits only complete UTF-8 characters. The incomplete tail of a
 * multi-byte character (at most 3 bytes) is held back until its remaining bytes arrive, so byte-
 * fallback pieces of an emoji never surface as U+FFFD or a lone surrogate.
 *
 * Why TextDecoder in streaming mode: it implements exactly the WHATWG UTF-8 decoder, so the
 * concatenation of all pushes plus flush equals a one-shot decode of the same bytes, including how
 * invalid sequences become U+FFFD.
 */
export class Utf8StreamDecoder implements StreamDecoder {
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  private readonly options: ByteStreamOptions;
  private stripPending: boolean;

  /** `previous`: the token the decoded text follows (undefined = start of the text). */
  constructor(options: ByteStreamOptions, previous?: number) {
    this.options = options;
    this.stripPending =
      options.stripFirstSpace && (previous === undefined || previous === options.bosTokenId);
  }

  push(id: number): string {
    let bytes = this.options.tokenBytes(id);
    if (this.stripPending && id !== this.options.bosTokenId) {
      this.stripPending = false;
      if (bytes[0] === 0x20) bytes = bytes.subarray(1);
    }
    if (bytes.length === 0) return '';
    return this.utf8.decode(bytes, { stream: true });
  }

  flush(): string {
    // End of stream: an incomplete tail becomes U+FFFD; the decoder is then reset for reuse.
    return this.utf8.decode();
  }
}

/** Whole-sequence decode through the same path as streaming, so both always agree. */
export function decodeTokens(options: ByteStreamOptions, ids: readonly number[], previous?: number): string {
  const decoder = new Utf8StreamDecoder(options, previous);
  let text = '';
  for (const id of ids) text += decoder.push(id);
  return text + decoder.flush();
}

const lenientUtf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Human-readable text of one token's bytes (partial characters show as U+FFFD). */
export function bytesToDisplayText(bytes: Uint8Array): string {
  return lenientUtf8.decode(bytes);
}
