import type { OnnxGraphBuilder } from './onnx-model.ts';

/**
 * A graph's small constants, each made on first use and shared after: ORT warns about
 * initializers no node reads (e.g. a model whose attention was pruned away has no per-group
 * reductions).
 */
export class LazyConstants {
  private readonly made = new Map<string, string>();

  constructor(private readonly g: OnnxGraphBuilder) {}

  /** The constant `name`, made by `make` the first time. */
  once(name: string, make: () => string): string {
    if (!this.made.has(name)) this.made.set(name, make());
    return this.made.get(name)!;
  }

  /** An int64 vector of axes (or indices) `values`. */
  axes(...values: number[]): string {
    const name = `axes_${values.join('_').replaceAll('-', 'm')}`;
    return this.once(name, () => this.g.int64Initializer(name, values));
  }
}
