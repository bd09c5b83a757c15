/**
 * Global gradient-norm clipping: ‖g‖₂ over every trainable tensor together (accumulated in
 * doubles, in a fixed order). Returns the norm and the factor min(1, maxNorm/‖g‖) to scale every
 * gradient by; maxNorm ≤ 0 or infinite turns clipping off. A non-finite norm is returned as is
 * (the training loop treats it like a non-finite loss).
 */
export function clipFactor(grads: Iterable<Float32Array>, maxNorm: number): { norm: number; scale: number } {
  let sum = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sum += g[i]! * g[i]!;
  const norm = Math.sqrt(sum);
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm) || !Number.isFinite(norm) || norm <= maxNorm) return { norm, scale: 1 };
  return { norm, scale: maxNorm / norm };
}
