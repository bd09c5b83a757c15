import { expectedWeightShapes, type ModelSpec, weightName } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import type { OnnxModel } from '../onnx/onnx-model.ts';
import { causalMask, ropeTables } from './attention-constants.ts';
import { DiffGraph, type Precision } from './diff-graph.ts';
import { add, addBias, causalAttention, embedding, matmulWT, nextTokenLoss, reshape, rmsNorm, rope, scale, swiglu, transpose } from './diff-ops.ts';
import { type LoraConfig, type LoraSite, loraSites } from './lora.ts';

/**
 * ModelSpec + weights → one ONNX graph that runs a LLaMA forward pass over [batch, T] token ids,
 * the loss, and the backward pass (closed-form, diff-ops.ts), outputting the loss and the gradient
 * of every trainable tensor. Trainable tensors are graph inputs, so an optimizer outside the graph
 * updates them between runs; frozen weights are initializers.
 *
 * Same model as the serving and calibration graphs: RMSNorm, rotate-half RoPE (rope-cache.ts
 * frequencies), causal grouped-query attention (here in MatMul/Softmax form on unpadded heads),
 * SwiGLU, tied or untied head, q/k/v biases where the spec has them (trainable like any weight);
 * per-layer shapes, 0 heads = no attention, 0 ffn = no MLP.
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
  const withGradients = options.gradients ?? true;
  const params = new TrainingParameters(dg, spec, weights, options.trainable ?? (() => withGradients && !options.lora), options.lora);

  const ids = dg.g.input(trainingGraphIo.inputIds, 7, ['batch', T]);
  const flatIds = dg.op('Reshape', [ids, dg.ints(-1)]);
  const embedded = embedding(dg, params.weight(weightName.embed), flatIds, spec.vocabSize, spec.hidden); // [N, H], N = batch·T
  const h = addLayers(dg, spec, params, embedded, T);
  const final = rmsNorm(dg, h, params.weight(weightName.finalNorm), spec.normEps);
  const logits = matmulWT(dg, final, params.weight(spec.tiedEmbeddings ? weightName.embed : weightName.lmHead)); // [N, V]
  addLossOutputs(dg, logits, spec.vocabSize, T, options, withGradients, params.trainable);
  return { model: dg.toModel(), seqLen: T, loss: options.loss, precision, trainable: params.trainable };
}

/**
 * The model's tensors as graph values: a weight is a trainable input or a frozen initializer
 * (made on first use), and a projection with a LoRA adapter adds the adapter's trainable inputs.
 * `trainable` lists the inputs in the order the graph declares them.
 */
class TrainingParameters {
  readonly trainable: TrainableInput[] = [];
  private readonly values = new Map<string, string>();
  private readonly shapes: Map<string, number[]>;
  private readonly adapters: Map<string, LoraSite>;

  constructor(
    private readonly dg: DiffGraph,
    spec: ModelSpec,
    private readonly weights: Weights,
    private readonly isTrainable: (weight: string) => boolean,
    private readonly lora: LoraConfig | undefined,
  ) {
    this.shapes = expectedWeightShapes(spec);
    this.adapters = new Map(loraSites(spec, lora?.targets ?? []).map((s) => [s.weight, s]));
  }

  /** A weight as a graph value. */
  weight(name: string): string {
    let v = this.values.get(name);
    if (v) return v;
    const t = this.weights.get(name);
    const shape = this.shapes.get(name);
    if (!t || !shape) throw new Error(`weight '${name}' missing while building the training graph`);
    if (this.isTrainable(name)) {
      v = this.dg.input(name, shape, true);
      this.trainable.push({ name, shape, grad: gradOutputName(name) });
    } else {
      v = this.dg.constant(name, shape, t.data);
    }
    this.values.set(name, v);
    return v;
  }

  /** y = x·Wᵀ (+ (α/r)·(x·Aᵀ)·Bᵀ where W carries an adapter) (+ b where `bias` names one). */
  linear(x: string, name: string, bias?: string): string {
    const y = this.adapted(x, name);
    return bias === undefined ? y : addBias(this.dg, y, this.weight(bias));
  }

  private adapted(x: string, name: string): string {
    const { dg } = this;
    const y = matmulWT(dg, x, this.weight(name));
    const site = this.adapters.get(name);
    if (!site || !this.lora) return y;
    const { rank, alpha } = this.lora;
    const a = dg.input(site.a, [rank, site.in], true);
    const b = dg.input(site.b, [site.out, rank], true);
    this.trainable.push({ name: site.a, shape: [rank, site.in], grad: gradOutputName(site.a) }, { name: site.b, shape: [site.out, rank], grad: gradOutputName(site.b) });
    return add(dg, y, scale(dg, matmulWT(dg, matmulWT(dg, x, a), b), alpha / rank));
  }
}

/** Every layer's attention and MLP sub-blocks over the residual stream h [N, H]; returns the stream after them. */
function addLayers(dg: DiffGraph, spec: ModelSpec, params: TrainingParameters, embedded: string, T: number): string {
  const tables = new Map<number, ReturnType<typeof ropeTables>>();
  const ropeFor = (D: number) => {
    if (!tables.has(D)) tables.set(D, ropeTables(dg, spec.rope, D, T));
    return tables.get(D)!;
  };
  let mask: string | undefined;
  let h = embedded;
  spec.layers.forEach((layer, i) => {
    if (layer.heads > 0) {
      const { heads, kvHeads: KV, headDim: D } = layer;
      const G = heads / KV;
      const x = rmsNorm(dg, h, params.weight(weightName.attnNorm(i)), spec.normEps);
      // [N, n·D] → [B, KV, n, T, D]: consecutive query heads share a KV head (n = G for queries, 1 for keys/values).
      const heads5d = (t: string, n: number) => transpose(dg, reshape(dg, t, [-1, T, KV, n, D]), [0, 2, 3, 1, 4]);
      const bias = (name: string) => (spec.attentionBias ? name : undefined);
      const q = rope(dg, heads5d(params.linear(x, weightName.q(i), bias(weightName.qBias(i))), G), ropeFor(D));
      const k = rope(dg, heads5d(params.linear(x, weightName.k(i), bias(weightName.kBias(i))), 1), ropeFor(D));
      const v = heads5d(params.linear(x, weightName.v(i), bias(weightName.vBias(i))), 1);
      mask ??= causalMask(dg, T);
      const o = causalAttention(dg, q, k, v, 1 / Math.sqrt(D), mask);
      const merged = reshape(dg, transpose(dg, o, [0, 3, 1, 2, 4]), [-1, heads * D]);
      h = add(dg, h, params.linear(merged, weightName.o(i)));
    }
    if (layer.ffn > 0) {
      const x = rmsNorm(dg, h, params.weight(weightName.mlpNorm(i)), spec.normEps);
      const act = swiglu(dg, params.linear(x, weightName.gate(i)), params.linear(x, weightName.up(i)));
      h = add(dg, h, params.linear(act, weightName.down(i)));
    }
  });
  return h;
}

/** The loss inputs and outputs, the backward pass, and the gradient of every trainable input. */
function addLossOutputs(dg: DiffGraph, logits: string, V: number, T: number, options: TrainingGraphOptions, withGradients: boolean, trainable: readonly TrainableInput[]): void {
  const io = trainingGraphIo;
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
}
