import { expectedWeightShapes, type ModelSpec, weightName } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import type { OnnxModel } from '../onnx/onnx-model.ts';
import { causalMask, ropeTables } from './attention-constants.ts';
import { DiffGraph, type Precision } from './diff-graph.ts';
import { add, causalAttention, embedding, matmulWT, nextTokenLoss, reshape, rmsNorm, rope, scale, swiglu, transpose } from './diff-ops.ts';
import { type LoraConfig, loraSites } from './lora.ts';

/**
 * ModelSpec + weights → one ONNX graph that runs a LLaMA forward pass over [batch, T] token ids,
 * the loss, and the backward pass (closed-form, diff-ops.ts), outputting the loss and the gradient
 * of every trainable tensor. Trainable tensors are graph inputs, so an optimizer outside the graph
 * updates them between runs; frozen weights are initializers.
 *
 * Same model as the serving and calibration graphs: RMSNorm, rotate-half RoPE (rope-cache.ts
 * frequencies), causal grouped-query attention (here in MatMul/Softmax form on unpadded heads),
 * SwiGLU, tied or untied head; per-layer shapes, 0 heads = no attention, 0 ffn = no MLP.
 *
 * Inputs: input_ids [batch, T] int64; targets [batch, T] int64 (the token each position predicts);
 * loss_weights [batch, T] float (0 = ignore, e.g. padding or the last position); with loss 'kd',
 * teacher_logprobs [batch, T, vocab] and kd_alpha [] (1 = pure KL, 0 = pure CE); then the trainable
 * tensors by name. Outputs: loss, ce_loss, kl_loss (kd), and grad.<name> per trainable tensor.
 */
export type TrainingLoss = 'ce' | 'kd';

export interface TrainingGraphOptions {
  /** Tokens per sequence; fixed per graph (RoPE tables and the causal mask are built for it). */
  seqLen: number;
  loss: TrainingLoss;
  /** Which model weights are trainable inputs; the rest are frozen initializers. Default: all, except with LoRA or without gradients: none. */
  trainable?: (weight: string) => boolean;
  /** Adapters on the selected projections, trainable inputs named lora.<weight>.A / .B. */
  lora?: LoraConfig;
  /** float32 for training; float64 for gradient checks. */
  precision?: Precision;
  /** Emit the backward pass (default true); false gives a forward/loss-only graph. */
  gradients?: boolean;
  /** Also output the model's next-token log-probabilities [batch, T, vocab] (a distillation teacher's). */
  logProbs?: boolean;
}

export interface TrainableInput {
  /** Graph input name: a weight name, or a LoRA adapter's. */
  name: string;
  shape: number[];
  /** Graph output holding d loss / d this tensor. */
  grad: string;
}

export interface TrainingGraph {
  model: OnnxModel;
  seqLen: number;
  loss: TrainingLoss;
  precision: Precision;
  /** In the order the graph declares them. */
  trainable: TrainableInput[];
}

export const trainingGraphIo = {
  inputIds: 'input_ids',
  targets: 'targets',
  lossWeights: 'loss_weights',
  teacherLogProbs: 'teacher_logprobs',
  kdAlpha: 'kd_alpha',
  loss: 'loss',
  ce: 'ce_loss',
  kl: 'kl_loss',
  logProbs: 'log_probs',
} as const;

export function gradOutputName(input: string): string {
  return `grad.${input}`;
}

export function buildTrainingGraph(spec: ModelSpec, weights: Weights, options: TrainingGraphOptions): TrainingGraph {
  const precision = options.precision ?? 'float32';
  const T = options.seqLen;
  if (!Number.isInteger(T) || T < 1) throw new Error(`training graph: seqLen must be a positive integer, got ${T}`);
  const dg = new DiffGraph('training', precision);
  const io = trainingGraphIo;
  const H = spec.hidden;
  const V = spec.vocabSize;
  const shapes = expectedWeightShapes(spec);
  const withGradients = options.gradients ?? true;
  const isTrainable = options.trainable ?? (() => withGradients && !options.lora);
  const trainable: TrainableInput[] = [];

  const values = new Map<string, string>();
  /** A weight as a graph value: a trainable input, or a frozen initializer (made on first use). */
  const weight = (name: string): string => {
    let v = values.get(name);
    if (v) return v;
    const t = weights.get(name);
    const shape = shapes.get(name);
    if (!t || !shape) throw new Error(`weight '${name}' missing while building the training graph`);
    if (isTrainable(name)) {
      v = dg.input(name, shape, true);
      trainable.push({ name, shape, grad: gradOutputName(name) });
    } else {
      v = dg.constant(name, shape, t.data);
    }
    values.set(name, v);
    return v;
  };

  const adapters = new Map(loraSites(spec, options.lora?.targets ?? []).map((s) => [s.weight, s]));
  /** y = x·Wᵀ (+ (α/r)·(x·Aᵀ)·Bᵀ where W carries an adapter). */
  const linear = (x: string, name: string): string => {
    const y = matmulWT(dg, x, weight(name));
    const site = adapters.get(name);
    if (!site || !options.lora) return y;
    const { rank, alpha } = options.lora;
    const a = dg.input(site.a, [rank, site.in], true);
    const b = dg.input(site.b, [site.out, rank], true);
    trainable.push({ name: site.a, shape: [rank, site.in], grad: gradOutputName(site.a) }, { name: site.b, shape: [site.out, rank], grad: gradOutputName(site.b) });
    return add(dg, y, scale(dg, matmulWT(dg, matmulWT(dg, x, a), b), alpha / rank));
  };

  const ids = dg.g.input(io.inputIds, 7, ['batch', T]);
  const flatIds = dg.op('Reshape', [ids, dg.ints(-1)]);
  let h = embedding(dg, weight(weightName.embed), flatIds, V, H); // [N, H], N = batch·T

  const tables = new Map<number, ReturnType<typeof ropeTables>>();
  const ropeFor = (D: number) => {
    if (!tables.has(D)) tables.set(D, ropeTables(dg, spec.rope, D, T));
    return tables.get(D)!;
  };
  let mask: string | undefined;

  spec.layers.forEach((layer, i) => {
    if (layer.heads > 0) {
      const { heads, kvHeads: KV, headDim: D } = layer;
      const G = heads / KV;
      const x = rmsNorm(dg, h, weight(weightName.attnNorm(i)), spec.normEps);
      // [N, n·D] → [B, KV, n, T, D]: consecutive query heads share a KV head (n = G for queries, 1 for keys/values).
      const heads5d = (t: string, n: number) => transpose(dg, reshape(dg, t, [-1, T, KV, n, D]), [0, 2, 3, 1, 4]);
      const q = rope(dg, heads5d(linear(x, weightName.q(i)), G), ropeFor(D));
      const k = rope(dg, heads5d(linear(x, weightName.k(i)), 1), ropeFor(D));
      const v = heads5d(linear(x, weightName.v(i)), 1);
      mask ??= causalMask(dg, T);
      const o = causalAttention(dg, q, k, v, 1 / Math.sqrt(D), mask);
      const merged = reshape(dg, transpose(dg, o, [0, 3, 1, 2, 4]), [-1, heads * D]);
      h = add(dg, h, linear(merged, weightName.o(i)));
    }
    if (layer.ffn > 0) {
      const x = rmsNorm(dg, h, weight(weightName.mlpNorm(i)), spec.normEps);
      const act = swiglu(dg, linear(x, weightName.gate(i)), linear(x, weightName.up(i)));
      h = add(dg, h, linear(act, weightName.down(i)));
    }
  });

  const final = rmsNorm(dg, h, weight(weightName.finalNorm), spec.normEps);
  const logits = matmulWT(dg, final, weight(spec.tiedEmbeddings ? weightName.embed : weightName.lmHead)); // [N, V]

  const targets = dg.op('Reshape', [dg.g.input(io.targets, 7, ['batch', T]), dg.ints(-1)]);
  const lossWeights = dg.op('Reshape', [dg.input(io.lossWeights, ['batch', T]), dg.ints(-1)]);
  const teacher =
    options.loss === 'kd'
      ? { logProbs: dg.op('Reshape', [dg.input(io.teacherLogProbs, ['batch', T, V]), dg.ints(-1, V)]), alpha: dg.input(io.kdAlpha, []) }
      : undefined;
  const loss = nextTokenLoss(dg, logits, V, { targets, weights: lossWeights, ...(teacher && { teacher }) });

  if (withGradients) dg.backward(loss.loss);
  dg.output(loss.loss, io.loss, []);
  dg.output(loss.ce, io.ce, []);
  if (loss.kl) dg.output(loss.kl, io.kl, []);
  if (options.logProbs) dg.output(dg.op('Reshape', [dg.op('LogSoftmax', [logits], { axis: { i: -1 } }), dg.ints(-1, T, V)]), io.logProbs, ['batch', T, V]);
  if (withGradients) {
    for (const t of trainable) {
      const g = dg.grad(t.name);
      if (!g) throw new Error(`training graph: no gradient reaches '${t.name}'`);
      dg.output(g, t.grad, t.shape);
    }
  }
  return { model: dg.toModel(), seqLen: T, loss: options.loss, precision, trainable };
}
