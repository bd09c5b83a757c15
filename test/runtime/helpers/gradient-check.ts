import * as ort from 'onnxruntime-node';
import { createOrtSession } from '../../../src/runtime/device/ort-session.ts';
import type { OnnxModel } from '../../../src/runtime/onnx/onnx-model.ts';
import { DiffGraph, type Precision } from '../../../src/runtime/train/diff-graph.ts';

/**
 * Finite-difference gradient checks for DiffGraph ops and graphs. The graph is built twice from
 * the same code: in float64, where central differences (ε = 1e-5) and the analytic gradient must
 * agree to ~1e-7, and in float32, the precision training runs in, whose gradient is compared with
 * the float64 one.
 */
export interface FloatInput {
  name: string;
  dims: number[];
  data: Float64Array;
  /** Gets a gradient (and is probed by finite differences). */
  trainable: boolean;
}

export interface IntInput {
  name: string;
  dims: number[];
  data: BigInt64Array;
}

export type BuildLoss = (dg: DiffGraph) => string;

/** Deterministic uniform noise in [−scale, scale). */
export function noise(n: number, seed: number, scale = 1): Float64Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}

export class GradientProbe {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly precision: Precision,
    private readonly floats: FloatInput[],
    private readonly ints: IntInput[],
    private readonly gradNames: Map<string, string>,
  ) {}

  /** A probe over a graph built elsewhere, with output 'loss' and the named gradient outputs. */
  static async fromModel(model: OnnxModel, precision: Precision, floats: FloatInput[], ints: IntInput[], gradNames: Map<string, string>): Promise<GradientProbe> {
    return new GradientProbe(await createOrtSession(model, 'cpu', { threads: 1 }), precision, floats, ints, gradNames);
  }

  static async create(precision: Precision, floats: FloatInput[], ints: IntInput[], build: BuildLoss): Promise<GradientProbe> {
    const dg = new DiffGraph('gradient_check', precision);
    for (const f of floats) dg.input(f.name, f.dims, f.trainable);
    for (const i of ints) dg.g.input(i.name, 7, i.dims);
    const loss = build(dg);
    dg.backward(loss);
    dg.output(loss, 'loss', []);
    const gradNames = new Map<string, string>();
    for (const f of floats.filter((f) => f.trainable)) {
      const g = dg.grad(f.name);
      if (!g) throw new Error(`no gradient reached ${f.name}`);
      dg.output(g, `grad.${f.name}`, f.dims);
      gradNames.set(f.name, `grad.${f.name}`);
    }
    const model: OnnxModel = dg.toModel();
    const session = await createOrtSession(model, 'cpu', { threads: 1 });
    return new GradientProbe(session, precision, floats, ints, gradNames);
  }

  private feeds(override?: { name: string; data: Float64Array }): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const f of this.floats) {
      const data = override?.name === f.name ? override.data : f.data;
      feeds[f.name] = this.precision === 'float64' ? new ort.Tensor('float64', data, f.dims) : new ort.Tensor('float32', Float32Array.from(data), f.dims);
    }
    for (const i of this.ints) feeds[i.name] = new ort.Tensor('int64', i.data, i.dims);
    return feeds;
  }

  async loss(override?: { name: string; data: Float64Array }): Promise<number> {
    const out = await this.session.run(this.feeds(override), ['loss']);
    return Number((out.loss!.data as Float64Array | Float32Array)[0]);
  }

  async gradients(): Promise<Map<string, Float64Array>> {
    const out = await this.session.run(this.feeds(), [...this.gradNames.values()]);
    const grads = new Map<string, Float64Array>();
    for (const [name, output] of this.gradNames) grads.set(name, Float64Array.from(out[output]!.data as Float64Array | Float32Array));
    return grads;
  }

  /**
   * Central differences of the loss at `indices` of input `name` (every element when omitted):
   * (L(θ + ε eᵢ) − L(θ − ε eᵢ)) / 2ε.
   */
  async finiteDifferences(name: string, indices?: number[], eps = 1e-5): Promise<{ indices: number[]; values: Float64Array }> {
    const f = this.floats.find((f) => f.name === name)!;
    const idx = indices ?? Array.from({ length: f.data.length }, (_, i) => i);
    const values = new Float64Array(idx.length);
    for (const [k, i] of idx.entries()) {
      const data = Float64Array.from(f.data);
      data[i] = f.data[i]! + eps;
      const plus = await this.loss({ name, data });
      data[i] = f.data[i]! - eps;
      const minus = await this.loss({ name, data });
      values[k] = (plus - minus) / (2 * eps);
    }
    return { indices: idx, values };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** ‖a − b‖₂ / ‖b‖₂ (b the reference); 0 when both are zero. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let ref = 0;
  for (let i = 0; i < b.length; i++) {
    diff += (a[i]! - b[i]!) ** 2;
    ref += b[i]! ** 2;
  }
  if (ref === 0) return diff === 0 ? 0 : Infinity;
  return Math.sqrt(diff / ref);
}

/** Every element at `indices` of `a`. */
export function pick(a: Float64Array, indices: number[]): Float64Array {
  return Float64Array.from(indices, (i) => a[i]!);
}

/**
 * Tolerances (norm-wise relative error, ‖analytic − reference‖ / ‖reference‖):
 * float64 analytic vs float64 central differences (ε = 1e-5: truncation ~ε², rounding ~1e-16/ε);
 * float32 analytic vs float64 analytic (float32 rounding through a few ops).
 */
export const FD_TOLERANCE_F64 = 1e-8;
export const F32_TOLERANCE = 1e-5;

export interface GradientCheckResult {
  name: string;
  fdError: number;
  f32Error: number;
}

/** Full check of `build`: float64 gradients vs finite differences and float32 vs float64 gradients, per trainable input. */
export async function checkGradients(floats: FloatInput[], ints: IntInput[], build: BuildLoss, probes = 24): Promise<GradientCheckResult[]> {
  const f64 = await GradientProbe.create('float64', floats, ints, build);
  const f32 = await GradientProbe.create('float32', floats, ints, build);
  try {
    return await compareProbes(f64, f32, floats, probes);
  } finally {
    await f64.release();
    await f32.release();
  }
}

/** The comparison behind checkGradients, for two probes of one graph built in float64 and float32. */
export async function compareProbes(f64: GradientProbe, f32: GradientProbe, floats: FloatInput[], probes: number): Promise<GradientCheckResult[]> {
  const g64 = await f64.gradients();
  const g32 = await f32.gradients();
  const results: GradientCheckResult[] = [];
  for (const f of floats.filter((f) => f.trainable)) {
    const n = f.data.length;
    const indices = n <= probes ? undefined : spread(n, probes, f.name.length);
    const fd = await f64.finiteDifferences(f.name, indices);
    results.push({ name: f.name, fdError: relativeError(pick(g64.get(f.name)!, fd.indices), fd.values), f32Error: relativeError(g32.get(f.name)!, g64.get(f.name)!) });
  }
  return results;
}

/** `count` distinct indices spread over [0, n), offset by a seed. */
function spread(n: number, count: number, seed: number): number[] {
  const out = new Set<number>();
  const step = n / count;
  for (let k = 0; k < count; k++) out.add(Math.floor((k * step + seed * 7.3) % n));
  return [...out];
}
