import type { BlockQuantizedMatrix, FileBlocks } from './block-quantization.ts';
import type { Weights } from './tensor.ts';

/**
 * Weights in SharedArrayBuffers, so an engine worker, a prune worker and the main thread can hold
 * the same tensors without copying them (a structured clone of a SharedArrayBuffer shares its
 * memory). Tensors already shared are kept as they are; others are copied once.
 */
export function shareWeights(weights: Weights): Weights {
  const out: Weights = new Map();
  for (const [name, t] of weights) {
    if (t.data.buffer instanceof SharedArrayBuffer) {
      out.set(name, t);
      continue;
    }
    const data = new Float32Array(new SharedArrayBuffer(t.data.byteLength));
    data.set(t.data);
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

/** A checkpoint's quantized matrices in SharedArrayBuffers, as shareWeights does for floats. */
export function shareFileBlocks(blocks: FileBlocks): FileBlocks {
  const shared = <T extends Uint8Array | Float32Array>(a: T, make: (b: SharedArrayBuffer) => T): T => {
    if (a.buffer instanceof SharedArrayBuffer) return a;
    const out = make(new SharedArrayBuffer(a.byteLength));
    out.set(a);
    return out;
  };
  const out = new Map<string, BlockQuantizedMatrix>();
  for (const [name, q] of blocks) out.set(name, { ...q, codes: shared(q.codes, (b) => new Uint8Array(b)), scales: shared(q.scales, (b) => new Float32Array(b)) });
  return out;
}
