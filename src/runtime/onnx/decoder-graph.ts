import { type ModelSpec, weightName } from '../model/spec.ts';
import type { FileBlocks, WeightQuantization } from '../model/block-quantization.ts';
import type { Tensor, Weights } from '../model/tensor.ts';
import { type CacheOutputs, DecoderAttention, type KvCacheLayout } from './decoder-attention.ts';
import { DecoderProjections } from './decoder-projections.ts';
import { weightLookup } from './graph-weights.ts';
import { DataType, type FloatType, floatTypeCode, type OnnxModel, OnnxGraphBuilder } from './onnx-model.ts';
import { packedTokenLayout, type TokenLayout, unpackedTokens } from './packed-tokens.ts';
import { ResidualStream } from './residual-stream.ts';
import { rmsNormNode } from './rms-norm.ts';
import { ropeTableInitializers } from './rope-cache.ts';
import { transpose } from './weight-packing.ts';

/**
 * ModelSpec + weights → an ONNX decoder graph with a KV cache, built from ONNX Runtime's LLM
 * operators: GroupQueryAttention (fused RoPE, causal attention over a cache that is updated in
 * place), SimplifiedLayerNormalization (RMSNorm). Every layer is built from its own LayerSpec, so a
 * pruned model needs no special case: a layer without heads has no attention, one without ffn no MLP.
 *
 * Inputs:  input_ids int64 [B,S] ([1,T] with packedTokens, see below); seqlens_k int32 [B] (tokens in cache after this step, minus 1);
 *          total_sequence_length int32 scalar (max over the batch of seqlens_k + 1);
 *          past_key_i / past_value_i float [B, kvHeads_i, capacity, cacheHeadDim_i] per attention layer
 *          (capacity ≤ maxContext, chosen per run by the KV cache).
 * Outputs: logits float32 [B, S or 1, vocab]; present_key_i / present_value_i (same shape as past),
 *          or with cacheOutputs 'new' new_key_i / new_value_i [B, kvHeads_i, S, cacheHeadDim_i].
 * Weights, activations and the cache are `dtype` (float16 on GPUs); RMSNorm accumulates in float32
 * (stash_type) and logits are cast to float32 before they leave the graph.
 * Bind present_* to the very buffers given as past_*: GQA then writes only the new positions
 * instead of copying the cache (its "past-present share buffer" mode).
 * With `weights` int8 / int4, every block projection and the LM head are MatMulNBits nodes over
 * weights quantized here from float32 (block-quantization.ts), or over the checkpoint's own blocks
 * (`fileBlocks`) where those hold exactly the float weights given; the embedding gather, norms,
 * activations and cache stay float32.
 */
export interface DecoderGraphOptions {
  /** KV cache length per sequence (prompt + generated tokens); RoPE tables cover it. */
  maxContext: number;
  /** 'last': logits of the final position only (serving); 'all': every position (evaluation). */
  logits: 'last' | 'all';
  /** Element type of weights, activations and KV cache; default float32. */
  dtype?: FloatType;
  /** Block-quantized projections and LM head (CPU, float32 activations only). */
  weights?: WeightQuantization;
  /** Values per quantization block along the input width (MatMulNBitsSettings); default 32. */
  blockSize?: number;
  /** MatMulNBits accuracy_level (MatMulNBitsSettings); default DEFAULT_ACCURACY_LEVEL. */
  accuracyLevel?: number;
  /** The checkpoint's own quantized matrices: run as they are where they match (see above). */
  fileBlocks?: FileBlocks;
  /**
   * Fold each residual Add into the RMSNorm after it (com.microsoft.SkipSimplifiedLayerNormalization
   * returns the normalised sum and the sum): one node instead of two per sub-block. CPU graphs;
   * default false.
   */
  fuseResidualNorm?: boolean;
  /**
   * Packed tokens (logits 'last' only): input_ids is [1, T], the new tokens of every row back to
   * back, and everything but attention runs on those T tokens. Three more inputs place them:
   * pack_index int64 [B*S] (the packed token at each position of GroupQueryAttention's [B, S]
   * layout; padding positions may name any token), unpack_index int64 [T] (each token's position
   * b*S + s in that layout), logit_index int64 [B] (the packed token whose logits row b returns).
   * A batch of fresh prompts of different lengths then pays for padding in attention only, not in
   * the projections and MLP (ort-decoder-session.ts prefillBatch). Default false: input_ids [B, S].
   */
  packedTokens?: boolean;
  /**
   * What the graph returns of the cache. 'present' (default): present_key_i / present_value_i,
   * the whole cache, which the caller binds to its past_* buffers so that GroupQueryAttention
   * writes the new positions in place. 'new': only the positions this run added,
   * new_key_i / new_value_i [B, kvHeads_i, S, cacheHeadDim_i] — row b's positions
   * max(0, seqlens_k[b] + 1 - S) onwards — which the caller writes into its cache itself.
   * onnxruntime-node copies every fetched output into a fresh JavaScript array, so a whole-cache
   * output costs a copy of the cache per run (docs/architecture.md, "KV cache"); 'new' makes that
   * copy S positions per row. GQA then fills an arena buffer of its own from past_* instead of
   * writing into it.
   */
  cacheOutputs?: CacheOutputs;
}

export interface DecoderGraph {
  model: OnnxModel;
  kvLayers: KvCacheLayout[];
  dtype: FloatType;
  /** Set when projections run as MatMulNBits. */
  weights?: WeightQuantization;
  /** With `weights`: matrices run from the checkpoint's own blocks, and matrices quantized here. */
  weightBlocks?: { fromFile: number; quantized: number };
  maxContext: number;
  logits: 'last' | 'all';
  /** Built with packedTokens: input_ids [1, T] plus pack_index, unpack_index, logit_index. */
  packedTokens: boolean;
  /** Whether the cache leaves the graph whole (present_*) or as the new positions only (new_*). */
  cacheOutputs: CacheOutputs;
}

export function buildDecoderGraph(spec: ModelSpec, weights: Weights, options: DecoderGraphOptions): DecoderGraph {
  const g = new OnnxGraphBuilder('decoder');
  const weight = weightLookup(weights, 'the graph');
  const dtype = options.dtype ?? 'float32';
  const init = (name: string, dims: number[], data: Float32Array): string => g.tensorInitializer(name, dims, data, dtype);
  if (options.weights && dtype !== 'float32') throw new RangeError(`${options.weights} weights run with float32 activations, not ${dtype}`);
  const projections = new DecoderProjections(g, init, weight, options);

  const packedTokens = options.logits === 'last' && options.packedTokens === true;
  const ids = g.input('input_ids', DataType.int64, packedTokens ? [1, 'tokens'] : ['batch', 'seq']);
  const embedded = g.op('Gather', [init('embed', weight(weightName.embed).shape, weight(weightName.embed).data), ids], { axis: { i: 0 } });
  const seqlensK = g.input('seqlens_k', DataType.int32, ['batch']);
  const totalLen = g.input('total_sequence_length', DataType.int32, []);
  const tokens = packedTokens ? packedTokenLayout(g, seqlensK) : unpackedTokens;
  const gamma = (gammaName: string, initName: string) => init(initName, [spec.hidden], weight(gammaName).data);
  const residual = new ResidualStream(g, embedded, spec.normEps, gamma, options.fuseResidualNorm === true);

  const ropeTables = ropeTableInitializers(g, spec.rope, options.maxContext, dtype);
  const cacheOutputs = options.cacheOutputs ?? 'present';
  const attention = new DecoderAttention({ g, spec, weight, projections, tokens, ropeTables, seqlensK, totalLen, cacheOutputs, cacheType: floatTypeCode(dtype) });
  spec.layers.forEach((layer, i) => {
    if (layer.heads > 0) attention.add(i, layer, residual);
    if (layer.ffn > 0) addMlp(g, projections, i, residual);
  });
  residual.settle();
  addLmHead(g, spec, weight, projections, residual.h, tokens, options.logits, dtype, gamma);

  return {
    model: g.toModel({ '': 21, 'com.microsoft': 1 }),
    kvLayers: attention.kvLayers,
    dtype,
    ...(options.weights && { weights: options.weights, weightBlocks: projections.weightBlocks }),
    maxContext: options.maxContext,
    logits: options.logits,
    packedTokens,
    cacheOutputs,
  };
}

/** Layer i's MLP sub-block: RMSNorm, SwiGLU over the gate and up projections, down projection. */
function addMlp(g: OnnxGraphBuilder, projections: DecoderProjections, i: number, residual: ResidualStream): void {
  const x = residual.norm(weightName.mlpNorm(i), `l${i}.mlp_norm`);
  const gate = projections.matrix(x, `l${i}.gate`, weightName.gate(i));
  const up = projections.matrix(x, `l${i}.up`, weightName.up(i));
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  residual.add(projections.matrix(act, `l${i}.down`, weightName.down(i)));
}

/** The final norm and the vocabulary projection of the rows whose logits are returned, as float32 `logits`. */
function addLmHead(
  g: OnnxGraphBuilder,
  spec: ModelSpec,
  weight: (name: string) => Tensor,
  projections: DecoderProjections,
  hidden: string,
  tokens: TokenLayout,
  logits: DecoderGraphOptions['logits'],
  dtype: FloatType,
  gamma: (gammaName: string, initName: string) => string,
): void {
  let h = hidden;
  if (tokens.logitIndex !== undefined) {
    // Row b's logits: packed token logit_index[b]; [1, B, hidden] → [B, 1, hidden].
    h = g.op('Transpose', [g.op('Gather', [h, tokens.logitIndex], { axis: { i: 1 } })], { perm: { ints: [1, 0, 2] } });
  } else if (logits === 'last') {
    // Only the final position's logits are needed to sample: skip the vocab projection elsewhere.
    h = g.op('Slice', [h, g.int64Initializer('last_start', [-1]), g.int64Initializer('last_end', [2 ** 62]), g.int64Initializer('seq_axis', [1])]);
  }
  h = rmsNormNode(g, h, gamma(weightName.finalNorm, 'final_norm'), spec.normEps);
  const headName = spec.tiedEmbeddings ? weightName.embed : weightName.lmHead;
  const head = weight(headName);
  const lmHead = (output?: string) => projections.linear(h, 'lm_head', [headName], spec.vocabSize, spec.hidden, () => head.data, () => transpose(head), output);
  if (dtype === 'float32') lmHead('logits');
  else g.node('Cast', [lmHead()], ['logits'], { to: { i: DataType.float } });
  g.output('logits', DataType.float, ['batch', logits === 'last' ? 1 : 'seq', spec.vocabSize]);
}
