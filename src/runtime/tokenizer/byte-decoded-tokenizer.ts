import { type ByteStreamOptions, bytesToDisplayText, decodeTokens, Utf8StreamDecoder } from './stream-decoder.ts';
import type { StreamDecoder } from './types.ts';

export const EMPTY_BYTES = new Uint8Array(0);

/**
 * The decoding half every tokenizer shares: text comes from the bytes each token contributes,
 * through one UTF-8 stream decoder, so whole-sequence decode and streaming always agree.
 * Subclasses supply the per-token bytes, the stream options and a name for byteless tokens.
 */
export abstract class ByteDecodedTokenizer {
  protected abstract readonly bytes: readonly Uint8Array[];
  protected abstract readonly stream: ByteStreamOptions;
  /** What logprobs show for a token without bytes (a control token's piece, e.g. `</s>`). */
  protected abstract tokenName(id: number): string;

  decode(ids: readonly number[]): string {
    return decodeTokens(this.stream, ids);
  }

  tokenBytes(id: number): Uint8Array {
    return this.bytes[id] ?? EMPTY_BYTES;
  }

  tokenText(id: number): string {
    const bytes = this.tokenBytes(id);
    return bytes.length > 0 ? bytesToDisplayText(bytes) : this.tokenName(id);
  }

  createDecoder(previous?: number): StreamDecoder {
    return new Utf8StreamDecoder(this.stream, previous);
  }
}
