import type { OnnxGraphBuilder } from './onnx-model.ts';
import { rmsNormNode } from './rms-norm.ts';

/**
 * The decoder graph's residual stream `h` and the RMSNorms that read it. With `fuse`
 * (DecoderGraphOptions.fuseResidualNorm) a sub-block's output is held back, and the next norm
 * adds it: SkipSimplifiedLayerNormalization returns the normalised sum and the sum in one node.
 */
export class ResidualStream {
  /** A sub-block output not yet added to `h` (fuse only). */
  private pending: string | undefined;

  constructor(
    private readonly g: OnnxGraphBuilder,
    /** The stream's current value. */
    public h: string,
    private readonly epsilon: number,
    /** The initializer of a norm's gains, made from the weight `gammaName` under `initName`. */
    private readonly gamma: (gammaName: string, initName: string) => string,
    private readonly fuse: boolean,
  ) {}

  /** h += delta (deferred to the next norm when fusing). */
  add(delta: string): void {
    if (!this.fuse) this.h = this.g.op('Add', [this.h, delta]);
    else {
      this.settle();
      this.pending = delta;
    }
  }

  /** Add a held-back output now (after the last layer, where no norm follows in the stream). */
  settle(): void {
    if (this.pending === undefined) return;
    this.h = this.g.op('Add', [this.h, this.pending]);
    this.pending = undefined;
  }

  /** RMSNorm of the stream, adding a held-back sub-block output first, in the same node. */
  norm(gammaName: string, initName: string): string {
    if (this.pending === undefined) return rmsNormNode(this.g, this.h, this.gamma(gammaName, initName), this.epsilon);
    const [normed, sum] = [`${initName}.out`, `${initName}.sum`];
    this.g.node('SkipSimplifiedLayerNormalization', [this.h, this.pending, this.gamma(gammaName, initName)], [normed, '', '', sum], { epsilon: { f: this.epsilon } }, 'com.microsoft');
    this.h = sum;
    this.pending = undefined;
    return normed!;
  }
}
