import * as ort from 'onnxruntime-node';
import { createOrtSession } from '../device/ort-session.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import type { TrainingBatch } from './batch-sampler.ts';
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

  async run(batch: TrainingBatch, params: ReadonlyMap<string, Float32Array>, teacher?: TeacherTargets): Promise<StepResult> {
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

  /** [rows, seqLen, vocab] log-probabilities for the batch's inputs. */
  async logProbs(batch: TrainingBatch): Promise<Float32Array> {
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
