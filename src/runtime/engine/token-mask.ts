/** A constraint's token mask applied to one step's logits (structured outputs). */

/**
 * Sets every logit outside `allowed` (a TokenConstraint's mask) to -Infinity in place; returns the
 * lowest allowed id (-1 if none), the fallback when every allowed logit is -Infinity.
 */
export function applyTokenMask(logits: Float32Array, allowed: Int32Array): number {
  const vocab = logits.length;
  let first = -1;
  for (let w = 0; w * 32 < vocab; w++) {
    const word = allowed[w] ?? 0;
    const base = w * 32;
    const end = Math.min(32, vocab - base);
    if (word === -1 && end === 32) {
      if (first < 0) first = base;
      continue;
    }
    for (let b = 0; b < end; b++) {
      if ((word >>> b) & 1) {
        if (first < 0) first = base + b;
      } else logits[base + b] = -Infinity;
    }
  }
  return first;
}
