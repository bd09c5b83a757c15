/**
 * ModelSpec: the one description of a LLaMA-family decoder that every reader produces, every
 * writer consumes, the graph builder compiles and MoP rewrites. A pruned model is just a model:
 * each layer carries its own dimensions, and a dense checkpoint is the case where all are equal.
 */

/** One transformer block. `heads === 0` means no attention sub-block; `ffn === 0` means no MLP. */
export interface LayerSpec {
  /** Query heads. A multiple of kvHeads (grouped-query attention); 0 = attention removed. */
  heads: number;
  /** Key/value heads (KV groups). 0 exactly when heads is 0. */
  kvHeads: number;
  /** Width of one head; RoPE rotates all of it. */
  headDim: number;
  /** SwiGLU intermediate size; 0 = MLP removed. */
  ffn: number;
}

/** Rotary position embedding. Weights are always held in the rotate-half (Hugging Face) layout. */
export interface RopeSpec {
  theta: number;
  /** Optional context-extension scaling, as in Hugging Face `rope_scaling`. */
  scaling?: RopeScaling;
}

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

/**
 * Checkpoint families that compute as LLaMA (RMSNorm, rotate-half RoPE, GQA, SwiGLU): Mistral is
 * LLaMA with full attention here; Qwen2 adds biases to the q/k/v projections.
 */
export type ModelFamily = 'llama' | 'mistral' | 'qwen2';

export interface ModelSpec {
  /** The computation every family here shares (RMSNorm, RoPE, GQA, SwiGLU). */
  architecture: 'llama';
  /** The family the checkpoint was published as (Hugging Face model_type); absent = llama. Writers keep it. */
  family?: Exclude<ModelFamily, 'llama'>;
  /** Every attention layer's q/k/v projections add a bias after the product (Qwen2); absent = none. */
  attentionBias?: boolean;
  vocabSize: number;
  /** Residual stream width. */
  hidden: number;
  layers: LayerSpec[];
  normEps: number;
  rope: RopeSpec;
  /** Output projection shares the token-embedding matrix. */
  tiedEmbeddings: boolean;
  bosTokenId: number;
  /** Tokens that end generation (a model may have several, e.g. LLaMA-3's <|eot_id|>). */
  eosTokenIds: number[];
  /** Longest sequence (prompt + generated) the model supports. */
  maxContext: number;
}

/**
 * Weight names follow Hugging Face LLaMA so the safetensors writer needs no mapping:
 *   model.embed_tokens.weight                  [vocab, hidden]
 *   model.layers.{i}.input_layernorm.weight    [hidden]            (present iff heads > 0)
 *   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight  [out, in]   (present iff heads > 0)
 *   model.layers.{i}.self_attn.{q,k,v}_proj.bias       [out]      (present iff heads > 0 and attentionBias)
 *   model.layers.{i}.post_attention_layernorm.weight  [hidden]    (present iff ffn > 0)
 *   model.layers.{i}.mlp.{gate,up,down}_proj.weight   [out, in]   (present iff ffn > 0)
 *   model.norm.weight                          [hidden]
 *   lm_head.weight                             [vocab, hidden]     (present iff !tiedEmbeddings)
 * All tensors are float32 in memory; Q/K rows are in rotate-half order.
 */
export const weightName = {
  embed: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  lmHead: 'lm_head.weight',
  attnNorm: (i: number) => `model.layers.${i}.input_layernorm.weight`,
  q: (i: number) => `model.layers.${i}.self_attn.q_proj.weight`,
  k: (i: number) => `model.layers.${i}.self_attn.k_proj.weight`,
  v: (i: number) => `model.layers.${i}.self_attn.v_proj.weight`,
  o: (i: number) => `model.layers.${i}.self_attn.o_proj.weight`,
  qBias: (i: number) => `model.layers.${i}.self_attn.q_proj.bias`,
  kBias: (i: number) => `model.layers.${i}.self_attn.k_proj.bias`,
  vBias: (i: number) => `model.layers.${i}.self_attn.v_proj.bias`,
  mlpNorm: (i: number) => `model.layers.${i}.post_attention_layernorm.weight`,
  gate: (i: number) => `model.layers.${i}.mlp.gate_proj.weight`,
  up: (i: number) => `model.layers.${i}.mlp.up_proj.weight`,
  down: (i: number) => `model.layers.${i}.mlp.down_proj.weight`,
} as const;

/** The shape every weight must have under `spec`; the single source of truth readers check against. */
export function expectedWeightShapes(spec: ModelSpec): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const h = spec.hidden;
  shapes.set(weightName.embed, [spec.vocabSize, h]);
  spec.layers.forEach((l, i) => {
    if (l.heads > 0) {
      shapes.set(weightName.attnNorm(i), [h]);
      shapes.set(weightName.q(i), [l.heads * l.headDim, h]);
      shapes.set(weightName.k(i), [l.kvHeads * l.headDim, h]);
      shapes.set(weightName.v(i), [l.kvHeads * l.headDim, h]);
      shapes.set(weightName.o(i), [h, l.heads * l.headDim]);
      if (spec.attentionBias) {
        shapes.set(weightName.qBias(i), [l.heads * l.headDim]);
        shapes.set(weightName.kBias(i), [l.kvHeads * l.headDim]);
        shapes.set(weightName.vBias(i), [l.kvHeads * l.headDim]);
      }
    }
    if (l.ffn > 0) {
      shapes.set(weightName.mlpNorm(i), [h]);
      shapes.set(weightName.gate(i), [l.ffn, h]);
      shapes.set(weightName.up(i), [l.ffn, h]);
      shapes.set(weightName.down(i), [h, l.ffn]);
    }
  });
  shapes.set(weightName.finalNorm, [h]);
  if (!spec.tiedEmbeddings) shapes.set(weightName.lmHead, [spec.vocabSize, h]);
  return shapes;
}

/** Parameters inside transformer blocks (what MoP prunes), and in total (embeddings, head included). */
export function parameterCounts(spec: ModelSpec): { blocks: number; embeddings: number; total: number } {
  let blocks = 0;
  let embeddings = 0;
  for (const [name, shape] of expectedWeightShapes(spec)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (name.startsWith('model.layers.')) blocks += n;
    else embeddings += n;
  }
  return { blocks, embeddings, total: blocks + embeddings };
}

/** Structural checks every spec must pass before it is built; throws ModelFormatError naming the layer. */
export function validateSpec(spec: ModelSpec, where: string): void {
  const fail = (msg: string) => {
    throw new ModelFormatError(`${where}: ${msg}`);
  };
  if (spec.architecture !== 'llama') fail(`unsupported architecture '${String(spec.architecture)}'`);
  if (spec.family !== undefined && spec.family !== 'mistral' && spec.family !== 'qwen2') fail(`unsupported model family '${String(spec.family)}' (supported: llama, mistral, qwen2)`);
  for (const [k, v] of [
    ['vocabSize', spec.vocabSize],
    ['hidden', spec.hidden],
    ['maxContext', spec.maxContext],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) fail(`${k} must be a positive integer, got ${v}`);
  }
  if (spec.layers.length === 0) fail('model has no layers');
  spec.layers.forEach((l, i) => {
    for (const k of ['heads', 'kvHeads', 'headDim', 'ffn'] as const) {
      if (!Number.isInteger(l[k]) || l[k] < 0) fail(`layer ${i}: ${k} must be a non-negative integer, got ${l[k]}`);
    }
    if ((l.heads === 0) !== (l.kvHeads === 0)) fail(`layer ${i}: heads (${l.heads}) and kvHeads (${l.kvHeads}) must both be 0 or both positive`);
    if (l.heads > 0 && l.heads % l.kvHeads !== 0) fail(`layer ${i}: heads (${l.heads}) is not a multiple of kvHeads (${l.kvHeads})`);
    if (l.heads > 0 && (l.headDim <= 0 || l.headDim % 2 !== 0)) fail(`layer ${i}: headDim must be a positive even number for RoPE, got ${l.headDim}`);
  });
  if (!(spec.normEps > 0)) fail(`normEps must be positive, got ${spec.normEps}`);
  if (!(spec.rope.theta > 0)) fail(`rope theta must be positive, got ${spec.rope.theta}`);
  const ids = [spec.bosTokenId, ...spec.eosTokenIds];
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= spec.vocabSize) fail(`special token id ${id} is outside the vocabulary (size ${spec.vocabSize})`);
}

/** A checkpoint that cannot be read as a model: the message says what is wrong and where. */
export class ModelFormatError extends Error {
  override name = 'ModelFormatError';
}
