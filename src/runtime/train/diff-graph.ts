import { bytesOf, DataType, type DataTypeCode, type Dim, OnnxGraphBuilder, type OnnxModel } from '../onnx/onnx-model.ts';

/**
 * Reverse-mode differentiation over the ONNX graph builder: a tape of closed-form backward rules.
 *
 * Every differentiable op (diff-ops.ts) emits its forward nodes, then registers a backward closure
 * with `define`. `backward(loss)` runs the closures in reverse order of definition; each reads the
 * gradient of its outputs (`grad`) and adds to the gradients of its inputs (`accumulate`). Values
 * that depend on no trainable input get no gradient nodes at all (a frozen base model costs no
 * weight-gradient work). The result is one ordinary ONNX graph: forward and backward run in a
 * single `session.run`, on ORT's kernels and thread pool.
 */

/** Element type of a training graph's float values. float64 exists for gradient checks. */
export type Precision = 'float32' | 'float64';

/** ONNX's DOUBLE; the shared builder only names the types the serving graphs use. */
const DOUBLE = 11 as DataTypeCode;

export function precisionCode(p: Precision): DataTypeCode {
  return p === 'float64' ? DOUBLE : DataType.float;
}

export class DiffGraph {
  readonly g: OnnxGraphBuilder;
  private readonly backwards: (() => void)[] = [];
  private readonly needsGrad = new Set<string>();
  private readonly contributions = new Map<string, string[]>();
  private readonly summed = new Map<string, string>();
  private readonly cache = new Map<string, string>();
  private differentiated = false;

  constructor(
    name: string,
    readonly precision: Precision,
  ) {
    this.g = new OnnxGraphBuilder(name);
  }

  get typeCode(): DataTypeCode {
    return precisionCode(this.precision);
  }

  /** A float graph input; `trainable` ones get gradients. */
  input(name: string, dims: Dim[], trainable = false): string {
    this.g.input(name, this.typeCode, dims);
    if (trainable) this.needsGrad.add(name);
    return name;
  }

  /** A float constant stored in the graph's precision. */
  constant(name: string, dims: number[], data: ArrayLike<number>): string {
    if (this.precision === 'float32') return this.g.floatInitializer(name, dims, data instanceof Float32Array ? data : Float32Array.from(data));
    return this.g.initializer(name, { dims, dataType: DOUBLE, raw: bytesOf(data instanceof Float64Array ? data : Float64Array.from(data)) });
  }

  /** A float scalar constant, made once per value. */
  scalar(value: number): string {
    return this.cached(`scalar_${value}`, (name) => this.constant(name, [], [value]));
  }

  /** An int64 vector constant (axes, shapes, perms), made once per value. */
  ints(...values: number[]): string {
    return this.cached(`ints_${values.join('_').replaceAll('-', 'm')}`, (name) => this.g.int64Initializer(name, values));
  }

  op(opType: string, inputs: string[], attributes: Parameters<OnnxGraphBuilder['op']>[2] = {}): string {
    return this.g.op(opType, inputs, attributes);
  }

  requiresGrad(name: string): boolean {
    return this.needsGrad.has(name);
  }

  /**
   * Declare that `outputs` were computed from `inputs`. When any input needs a gradient, the
   * outputs do too and `backward` joins the tape.
   */
  define(outputs: string[], inputs: string[], backward: () => void): void {
    if (this.differentiated) throw new Error('DiffGraph: ops defined after backward()');
    if (!inputs.some((i) => this.needsGrad.has(i))) return;
    for (const o of outputs) this.needsGrad.add(o);
    this.backwards.push(backward);
  }

  /** Add one contribution to d loss / d `name` (ignored when `name` needs no gradient). */
  accumulate(name: string, grad: string): void {
    if (!this.needsGrad.has(name)) return;
    if (this.summed.has(name)) throw new Error(`DiffGraph: gradient of '${name}' read before all contributions arrived`);
    const list = this.contributions.get(name) ?? [];
    list.push(grad);
    this.contributions.set(name, list);
  }

  /**
   * The sum of the contributions to d loss / d `name` that have arrived so far, taken off its list
   * (undefined when none has): an op whose own contribution can start from it (a scatter-add into
   * it instead of into zeros) folds it in and accumulates the result, saving a full-size Sum.
   */
  takeContributions(name: string): string | undefined {
    if (this.summed.has(name)) throw new Error(`DiffGraph: gradient of '${name}' read before all contributions arrived`);
    const list = this.contributions.get(name);
    if (!list || list.length === 0) return undefined;
    this.contributions.set(name, []);
    return list.length === 1 ? list[0]! : this.op('Sum', list);
  }

  /** d loss / d `name`, or undefined where nothing downstream reached the loss. */
  grad(name: string): string | undefined {
    const done = this.summed.get(name);
    if (done) return done;
    const list = this.contributions.get(name);
    if (!list || list.length === 0) return undefined;
    const total = list.length === 1 ? list[0]! : this.op('Sum', list);
    this.summed.set(name, total);
    return total;
  }

  /** Emit the backward pass of scalar `loss`; afterwards `grad(input)` names each trainable input's gradient. */
  backward(loss: string): void {
    if (this.differentiated) throw new Error('DiffGraph: backward() called twice');
    this.differentiated = true;
    if (!this.needsGrad.has(loss)) return;
    this.accumulate(loss, this.scalar(1));
    for (let i = this.backwards.length - 1; i >= 0; i--) this.backwards[i]!();
  }

  /** Expose `value` as graph output `name` (an Identity when the names differ). */
  output(value: string, name: string, dims: Dim[]): void {
    if (value !== name) this.g.node('Identity', [value], [name]);
    this.g.output(name, this.typeCode, dims);
  }

  toModel(): OnnxModel {
    return this.g.toModel({ '': 21 });
  }

  private cached(key: string, make: (name: string) => string): string {
    let name = this.cache.get(key);
    if (!name) {
      name = make(key);
      this.cache.set(key, name);
    }
    return name;
  }
}
