import { ByteDecodedTokenizer, EMPTY_BYTES } from './byte-decoded-tokenizer.ts';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { parseBytePiece } from './scored-vocab.ts';
import { SpecialTokenMasking } from './special-token-masking.ts';
import type { ByteStreamOptions } from './stream-decoder.ts';
import { normalizeSpans } from './text-spans.ts';
import { TokenizerError } from './types.ts';
import type { EncodeOptions, TextSpan, Tokenizer, TokenizerJsonSource } from './types.ts';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * GPT-2's byte-to-unicode table, inverted: byte-level BPE spells each byte as a printable
 * character (printable Latin-1 bytes as themselves, the rest shifted to U+0100..).
 */
export const BYTE_LEVEL_CHAR_TO_BYTE: ReadonlyMap<string, number> = (() => {
  const map = new Map<string, number>();
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map.set(String.fromCharCode(printable ? b : 256 + shifted++), b);
  }
  return map;
})();

const utf8 = new TextEncoder();

/** How the tokenizer.json's decoder turns one token string into bytes. */
interface PieceDecoding {
  byteLevel: boolean;
  byteFallback: boolean;
  /** Literal string replacements, in order (e.g. '▁' -> ' '). */
  replace: [string, string][];
  /** The decoder strips one leading space (sentencepiece dummy prefix). */
  stripFirstSpace: boolean;
}

/**
 * Tokenizer over a Hugging Face tokenizer.json. Encoding is delegated to @huggingface/tokenizers;
 * bytes per token are derived here from the json's decoder so that streaming is byte-exact (the
 * library only decodes whole sequences).
 */
export class TokenizerJsonTokenizer extends ByteDecodedTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenIds: readonly number[];
  readonly specialTokenTexts: readonly string[];

  private readonly hf: HfTokenizer;
  /** Encodes spans whose special tokens' texts are not all to be parsed (built on first use). */
  private masking: SpecialTokenMasking | undefined;
  private readonly json: Json;
  private readonly config: Json;
  private readonly origin: string;
  private readonly addBosByDefault: boolean;
  private readonly tokens: (string | undefined)[];
  protected override readonly bytes: Uint8Array[];
  protected override readonly stream: ByteStreamOptions;

  /** `eosTokenIds`: end tokens known from elsewhere (GGUF metadata, generation_config.json). */
  constructor(source: TokenizerJsonSource, overrides?: { eosTokenIds?: readonly number[] }) {
    super();
    const { json, origin } = source;
    this.origin = origin;
    if (!isObject(json)) throw new TokenizerError(`${origin}: tokenizer.json is not a JSON object`);
    const config = source.config ?? {};
    if (!isObject(config)) throw new TokenizerError(`${origin}: tokenizer_config.json is not a JSON object`);
    rejectUnsupportedFeatures(json, origin);
    this.json = json;
    this.config = config;
    try {
      this.hf = new HfTokenizer(json, config);
    } catch (e) {
      throw new TokenizerError(
        `${origin}: @huggingface/tokenizers cannot load this tokenizer.json: ${e instanceof Error ? e.message : String(e)}`,
      );
    }

    // id -> token string, including added tokens (the library has folded those into its vocab).
    this.tokens = Array.from(this.hf.model?.vocab ?? [], (t) => (typeof t === 'string' ? t : undefined));
    const added = this.hf.get_added_tokens_decoder();
    this.vocabSize = this.tokens.length;
    this.specialTokenTexts = [...added.values()].filter((t) => t.special && t.content.length > 0).map((t) => t.content);

    const decoding = analyseDecoder(json['decoder'], origin);
    this.bytes = [];
    for (let id = 0; id < this.tokens.length; id++) {
      const token = this.tokens[id];
      const addedToken = added.get(id);
      if (token === undefined || addedToken?.special) this.bytes.push(EMPTY_BYTES);
      // Added tokens are inserted verbatim, bypassing the decoder (as transformers does).
      else if (addedToken) this.bytes.push(utf8.encode(token));
      else this.bytes.push(pieceBytes(token, decoding));
    }

    const tokenId = (v: unknown): number | undefined => {
      const content = typeof v === 'string' ? v : isObject(v) && typeof v['content'] === 'string' ? v['content'] : undefined;
      return content === undefined ? undefined : this.hf.token_to_id(content);
    };
    const templateBos = templateBosId(json['post_processor'], (t) => this.hf.token_to_id(t));
    this.bosTokenId = tokenId(config['bos_token']) ?? templateBos;
    const eos = tokenId(config['eos_token']);
    this.eosTokenIds = overrides?.eosTokenIds ? [...overrides.eosTokenIds] : eos === undefined ? [] : [eos];
    // transformers: an explicit add_bos_token rebuilds the post-processor; otherwise the
    // post-processor's template decides.
    const addBos = config['add_bos_token'];
    this.addBosByDefault =
      typeof addBos === 'boolean' ? addBos : templateBos !== undefined && templateBos === this.bosTokenId;

    this.stream = {
      tokenBytes: (id) => this.tokenBytes(id),
      stripFirstSpace: decoding.stripFirstSpace,
      bosTokenId: this.bosTokenId,
    };
  }

  encode(text: string | readonly TextSpan[], options?: EncodeOptions): number[] {
    // BOS is added here rather than by the library's post-processor, so it is added exactly once
    // (also when the text already starts with the BOS token, e.g. from a chat template).
    const spans = normalizeSpans(text);
    let ids: (number | undefined)[];
    if (spans.length === 0) ids = [];
    // All of it parse text: the library as it is (it parses special tokens everywhere).
    else if (spans.length === 1 && spans[0]!.specialTokens === 'parse') ids = this.hf.encode(spans[0]!.text, { add_special_tokens: false }).ids;
    else {
      this.masking ??= new SpecialTokenMasking(this.json, this.config, this.hf.get_added_tokens_decoder().values(), this.hf.normalizer !== null, this.origin);
      ids = this.masking.encode(spans);
    }
    if (ids.some((id) => typeof id !== 'number')) {
      throw new TokenizerError(
        `${this.origin}: the text has a piece the vocabulary cannot represent and there is no unknown token`,
      );
    }
    const addBos = options?.addBos ?? this.addBosByDefault;
    if (addBos && this.bosTokenId !== undefined && ids[0] !== this.bosTokenId) ids.unshift(this.bosTokenId);
    return ids as number[];
  }

  protected override tokenName(id: number): string {
    return this.tokens[id] ?? '';
  }
}

function pieceBytes(token: string, d: PieceDecoding): Uint8Array {
  if (d.byteLevel) {
    const out: number[] = [];
    for (const ch of token) {
      const b = BYTE_LEVEL_CHAR_TO_BYTE.get(ch);
      if (b !== undefined) out.push(b);
      else out.push(...utf8.encode(ch));
    }
    return Uint8Array.from(out);
  }
  if (d.byteFallback) {
    const b = parseBytePiece(token);
    if (b !== undefined) return Uint8Array.of(b);
  }
  let text = token;
  for (const [from, to] of d.replace) text = text.replaceAll(from, to);
  return utf8.encode(text);
}

/** Reads the decoder section into a per-token byte mapping; rejects what cannot stream byte-exactly. */
function analyseDecoder(decoder: unknown, origin: string): PieceDecoding {
  const d: PieceDecoding = { byteLevel: false, byteFallback: false, replace: [], stripFirstSpace: false };
  const visit = (node: unknown): void => {
    if (node === null || node === undefined) return;
    if (!isObject(node)) throw new TokenizerError(`${origin}: tokenizer.json decoder is not an object`);
    const type = node['type'];
    switch (type) {
      case 'Sequence': {
        const list = node['decoders'];
        if (Array.isArray(list)) list.forEach(visit);
        return;
      }
      case 'ByteLevel':
        d.byteLevel = true;
        return;
      case 'ByteFallback':
        d.byteFallback = true;
        return;
      case 'Fuse':
        return;
      case 'Replace': {
        const pattern = node['pattern'];
        const from = isObject(pattern) ? pattern['String'] : undefined;
        if (typeof from !== 'string') {
          throw new TokenizerError(`${origin}: tokenizer.json decoder Replace with a regex pattern is not supported`);
        }
        d.replace.push([from, typeof node['content'] === 'string' ? node['content'] : '']);
        return;
      }
      case 'Strip': {
        const start = typeof node['start'] === 'number' ? node['start'] : 0;
        const stop = typeof node['stop'] === 'number' ? node['stop'] : 0;
        if (node['content'] !== ' ' || start > 1 || stop !== 0) {
          throw new TokenizerError(
            `${origin}: tokenizer.json decoder Strip other than one leading space is not supported`,
          );
        }
        if (start === 1) d.stripFirstSpace = true;
        return;
      }
      case 'Metaspace': {
        const replacement = typeof node['replacement'] === 'string' ? node['replacement'] : '\u2581';
        d.replace.push([replacement, ' ']);
        // Older files say add_prefix_space, newer ones prepend_scheme ("always" | "first" | "never").
        const scheme = node['prepend_scheme'];
        d.stripFirstSpace = scheme !== undefined ? scheme !== 'never' : node['add_prefix_space'] !== false;
        return;
      }
      default:
        throw new TokenizerError(
          `${origin}: tokenizer.json decoder ${JSON.stringify(type)} is not supported (token bytes cannot be derived for streaming)`,
        );
    }
  };
  visit(decoder);
  return d;
}

/** The BOS token a TemplateProcessing post-processor puts before the text, if any. */
function templateBosId(postProcessor: unknown, idOf: (token: string) => number | undefined): number | undefined {
  if (!isObject(postProcessor)) return undefined;
  if (postProcessor['type'] === 'Sequence' && Array.isArray(postProcessor['processors'])) {
    for (const p of postProcessor['processors']) {
      const id = templateBosId(p, idOf);
      if (id !== undefined) return id;
    }
    return undefined;
  }
  if (postProcessor['type'] !== 'TemplateProcessing' || !Array.isArray(postProcessor['single'])) return undefined;
  const first: unknown = postProcessor['single'][0];
  const special = isObject(first) ? first['SpecialToken'] : undefined;
  if (!isObject(special) || typeof special['id'] !== 'string') return undefined;
  const name = special['id'];
  const entry = isObject(postProcessor['special_tokens']) ? postProcessor['special_tokens'][name] : undefined;
  const ids = isObject(entry) ? entry['ids'] : undefined;
  if (Array.isArray(ids) && typeof ids[0] === 'number') return ids[0];
  return idOf(name);
}

/**
 * Features the library accepts but does not reproduce (its README): Split pre-tokenizers with the
 * MergedWithPrevious / MergedWithNext / Contiguous behaviours would silently tokenize differently
 * from the Rust implementation, so they are refused.
 */
function rejectUnsupportedFeatures(json: Json, origin: string): void {
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (!isObject(node)) return;
    if (node['type'] === 'Split') {
      const behavior = node['behavior'];
      if (behavior === 'MergedWithPrevious' || behavior === 'MergedWithNext' || behavior === 'Contiguous') {
        throw new TokenizerError(
          `${origin}: tokenizer.json pre-tokenizer Split with behavior ${behavior} is not supported by @huggingface/tokenizers`,
        );
      }
    }
    const children = node['pretokenizers'];
    if (Array.isArray(children)) children.forEach(visit);
  };
  visit(json['pre_tokenizer']);
  const model = json['model'];
  if (isObject(model) && model['type'] === 'BPE' && typeof model['dropout'] === 'number' && model['dropout'] > 0) {
    throw new TokenizerError(`${origin}: tokenizer.json BPE dropout is not supported (encoding would not be deterministic)`);
  }
}
