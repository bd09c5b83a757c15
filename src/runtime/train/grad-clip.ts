/**
 * Global gradient-norm clipping: ‖g‖₂ over every trainable tensor together. Each tensor's sum of
 * squares is accumulated in doubles, then the tensors' sums are added in their order, so the norm
 * is the same bit for bit whether one thread or several computed the sums.
 */
export function sumOfSquares(g: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < g.length; i++) sum += g[i]! * g[i]!;
  return sum;
}

/** ‖g‖₂ from the tensors' sums of squares, in tensor order. */
export function normOfSums(sums: Iterable<number>): number {
  let total = 0;
  for (const s of sums) total += s;
  return Math.sqrt(total);
}

/**
 * The factor min(1, maxNorm/‖g‖) to scale every gradient by; maxNorm ≤ 0 or infinite turns
 * clipping off. A non-finite norm gives 1 (the training loop treats it like a non-finite loss).
 */
export function clipScale(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm) || !Number.isFinite(norm) || norm <= maxNorm) return 1;
  return maxNorm / norm;
}
