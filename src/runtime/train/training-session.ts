import * as ort from 'onnxruntime-node';
import { createOrtSession } from '../device/ort-session.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import type { TrainingBatch } from './batch-sampler.ts';
import type { PieceOptions } from './teacher-cache.ts';
import { buildTrainingGraph, type TrainingGraph, type TrainingGraphOptions, trainingGraphIo } from './training-graph.ts';

/**
 * One ONNX Runtime session (CPU, float32) over a training graph: feed a batch and the current
 * trainable tensors, get the loss and every gradient from one run. The tensors are fed as views of
 * the optimizer's arrays (no copy on the way in); gradients come back as fresh arrays.
 */
export interface StepResult {
  loss: number;
  ce: number;
  kl?: number;
  grads: Map<string, Float32Array>;
}

/** Teacher next-token log-probabilities for a batch, [rows, seqLen, vocab], and the KL share α. */
export interface TeacherTargets {
  logProbs: Float32Array;
  alpha: number;
}

export class TrainingSession {
  private constructor(
    readonly graph: TrainingGraph,
    private readonly session: ort.InferenceSession,
    private readonly vocab: number,
  ) {}

  static async create(spec: ModelSpec, weights: Weights, options: Omit<TrainingGraphOptions, 'precision'>, threads?: number): Promise<TrainingSession> {
    const graph = buildTrainingGraph(spec, weights, { ...options, precision: 'float32' });
    const session = await createOrtSession(graph.model, 'cpu', { ...(threads !== undefined && { threads }) });
    return new TrainingSession(graph, session, spec.vocabSize);
  }

  /**
   * Loss and gradients of a batch. With `rowsPerRun` below the batch's rows the batch runs in
   * pieces of that many rows, and the pieces' losses and gradients are combined weighted by their
   * trained tokens (the graph's loss is a token-weighted mean, so this is the whole batch's, up to
   * float rounding); between pieces the event loop turns and `signal` is checked, so a cancel is
   * seen within one piece, not one step.
   */
  async run(batch: TrainingBatch, params: ReadonlyMap<string, Float32Array>, teacher?: TeacherTargets, o: PieceOptions = {}): Promise<StepResult> {
    const per = Math.max(1, Math.floor(o.rowsPerRun ?? batch.rows));
    if (per >= batch.rows) return this.runRows(batch, params, teacher);
    const T = batch.seqLen;
    const V = this.vocab;
    // Pieces that train any token, and the batch's trained tokens: each piece's loss and gradients
    // are weighted by its share, so the sum needs no pass of its own afterwards.
    const pieces: { r0: number; r1: number; n: number }[] = [];
    let total = 0;
    for (let r0 = 0; r0 < batch.rows; r0 += per) {
      const r1 = Math.min(batch.rows, r0 + per);
      const n = batch.weights.subarray(r0 * T, r1 * T).reduce((s, w) => s + w, 0);
      if (n > 0) pieces.push({ r0, r1, n });
      total += n;
    }
    if (pieces.length === 0) return this.runRows(batch, params, teacher);
    let loss = 0;
    let ce = 0;
    let kl = 0;
    let grads: Map<string, Float32Array> | undefined;
    for (const [k, { r0, r1, n }] of pieces.entries()) {
      if (k > 0) {
        await new Promise((resolve) => setImmediate(resolve));
        o.signal?.throwIfAborted();
      }
      const weights = batch.weights.subarray(r0 * T, r1 * T);
      const piece: TrainingBatch = { ...batch, rows: r1 - r0, ids: batch.ids.subarray(r0 * T, r1 * T), targets: batch.targets.subarray(r0 * T, r1 * T), weights, windows: batch.windows.slice(r0, r1), tokens: n };
      const t = teacher && { ...teacher, logProbs: teacher.logProbs.subarray(r0 * T * V, r1 * T * V) };
      const part = await this.runRows(piece, params, t);
      const share = n / total;
      loss += share * part.loss;
      ce += share * part.ce;
      kl += share * (part.kl ?? 0);
      if (!grads) {
        for (const g of part.grads.values()) for (let i = 0; i < g.length; i++) g[i]! *= share;
        grads = part.grads;
      } else {
        for (const [name, g] of part.grads) {
          const acc = grads.get(name)!;
          for (let i = 0; i < g.length; i++) acc[i]! += share * g[i]!;
        }
      }
    }
    return { loss, ce, ...(this.graph.loss === 'kd' && { kl }), grads: grads! };
  }

  private async runRows(batch: TrainingBatch, params: ReadonlyMap<string, Float32Array>, teacher?: TeacherTargets): Promise<StepResult> {
    const { rows, seqLen: T } = batch;
    const io = trainingGraphIo;
    const feeds: Record<string, ort.Tensor> = {
      [io.inputIds]: new ort.Tensor('int64', batch.ids, [rows, T]),
      [io.targets]: new ort.Tensor('int64', batch.targets, [rows, T]),
      [io.lossWeights]: new ort.Tensor('float32', batch.weights, [rows, T]),
    };
    if (this.graph.loss === 'kd') {
      if (!teacher) throw new Error('a distillation graph needs teacher log-probabilities');
      feeds[io.teacherLogProbs] = new ort.Tensor('float32', teacher.logProbs, [rows, T, this.vocab]);
      feeds[io.kdAlpha] = new ort.Tensor('float32', Float32Array.of(teacher.alpha), []);
    }
    for (const t of this.graph.trainable) {
      const data = params.get(t.name);
      if (!data) throw new Error(`no value for trainable tensor '${t.name}'`);
      feeds[t.name] = new ort.Tensor('float32', data, t.shape);
    }
    const fetches = [io.loss, io.ce, ...(this.graph.loss === 'kd' ? [io.kl] : []), ...this.graph.trainable.map((t) => t.grad)];
    const out = await this.session.run(feeds, fetches);
    const scalar = (name: string) => Number((out[name]!.data as Float32Array)[0]);
    const grads = new Map(this.graph.trainable.map((t) => [t.name, out[t.grad]!.data as Float32Array]));
    return { loss: scalar(io.loss), ce: scalar(io.ce), ...(this.graph.loss === 'kd' && { kl: scalar(io.kl) }), grads };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** A frozen model's next-token log-probabilities over training batches: the distillation teacher. */
export class TeacherSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly seqLen: number,
  ) {}

  static async create(spec: ModelSpec, weights: Weights, seqLen: number, threads?: number): Promise<TeacherSession> {
    const graph = buildTrainingGraph(spec, weights, { seqLen, loss: 'ce', gradients: false, logProbs: true });
    return new TeacherSession(await createOrtSession(graph.model, 'cpu', { ...(threads !== undefined && { threads }) }), seqLen);
  }

  /** [rows, seqLen, vocab] log-probabilities for the batch's inputs, in pieces of `rowsPerRun` rows (a cancel is seen between them). */
  async logProbs(batch: TrainingBatch, o: PieceOptions = {}): Promise<Float32Array> {
    const per = Math.max(1, Math.floor(o.rowsPerRun ?? batch.rows));
    if (per >= batch.rows) return this.logProbsOf(batch);
    const T = batch.seqLen;
    let out: Float32Array | undefined;
    for (let r0 = 0; r0 < batch.rows; r0 += per) {
      const r1 = Math.min(batch.rows, r0 + per);
      if (r0 > 0) {
        await new Promise((resolve) => setImmediate(resolve));
        o.signal?.throwIfAborted();
      }
      const piece = await this.logProbsOf({ ...batch, rows: r1 - r0, ids: batch.ids.subarray(r0 * T, r1 * T), targets: batch.targets.subarray(r0 * T, r1 * T), weights: batch.weights.subarray(r0 * T, r1 * T), windows: batch.windows.slice(r0, r1) });
      out ??= new Float32Array((batch.rows * piece.length) / (r1 - r0));
      out.set(piece, (r0 * piece.length) / (r1 - r0));
    }
    return out!;
  }

  private async logProbsOf(batch: TrainingBatch): Promise<Float32Array> {
    const io = trainingGraphIo;
    const out = await this.session.run(
      {
        [io.inputIds]: new ort.Tensor('int64', batch.ids, [batch.rows, batch.seqLen]),
        [io.targets]: new ort.Tensor('int64', batch.targets, [batch.rows, batch.seqLen]),
        [io.lossWeights]: new ort.Tensor('float32', batch.weights, [batch.rows, batch.seqLen]),
      },
      [io.logProbs],
    );
    return out[io.logProbs]!.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
