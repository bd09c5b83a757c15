import { DataType, type OnnxGraphBuilder } from './onnx-model.ts';

/**
 * How the decoder graph's tokens are laid out (DecoderGraphOptions.packedTokens). Unpacked, every
 * node sees attention's [B, S, C]. Packed, input_ids is [1, T] and everything but attention runs
 * on the T real tokens: `toRows` scatters [1, T, C] into [B, S, C] for attention, `fromRows`
 * gathers it back, and `logitIndex` names the packed token whose logits row b returns.
 */
export interface TokenLayout {
  toRows(x: string, width: number): string;
  fromRows(x: string, width: number): string;
  logitIndex?: string;
}

export const unpackedTokens: TokenLayout = { toRows: (x) => x, fromRows: (x) => x };

/** The packed layout's inputs (pack_index, unpack_index, logit_index) and its gathers. */
export function packedTokenLayout(g: OnnxGraphBuilder, seqlensK: string): TokenLayout {
  const packIndex = g.input('pack_index', DataType.int64, ['batch_seq']);
  const unpackIndex = g.input('unpack_index', DataType.int64, ['tokens']);
  const logitIndex = g.input('logit_index', DataType.int64, ['batch']);
  const batch = g.op('Shape', [seqlensK]);
  // One shape constant per width, made on first use.
  const shapes = new Map<string, string>();
  const shape = (name: string, make: () => string) => shapes.get(name) ?? (shapes.set(name, make()), shapes.get(name)!);
  const rowsShape = (width: number) => shape(`rows_${width}`, () => g.op('Concat', [batch, g.int64Initializer(`rows_${width}`, [-1, width])], { axis: { i: 0 } }));
  const tokensShape = (width: number) => shape(`tokens_${width}`, () => g.int64Initializer(`tokens_${width}`, [1, -1, width]));
  return {
    toRows: (x, width) => g.op('Reshape', [g.op('Gather', [x, packIndex], { axis: { i: 1 } }), rowsShape(width)]),
    fromRows: (x, width) => g.op('Gather', [g.op('Reshape', [x, tokensShape(width)]), unpackIndex], { axis: { i: 1 } }),
    logitIndex,
  };
}
