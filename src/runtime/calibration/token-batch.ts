/** Equal-length token sequences, run together. */
export interface TokenBatch {
  rows: number;
  seqLen: number;
  /** rows × seqLen token ids. */
  ids: Int32Array;
}

/** Split equal-length sequences into batches of about `tokensPerRun` tokens (bounded memory per run). */
export function toBatches(sequences: readonly Int32Array[], tokensPerRun = 4096): TokenBatch[] {
  const byLen = new Map<number, Int32Array[]>();
  for (const s of sequences) {
    if (!byLen.has(s.length)) byLen.set(s.length, []);
    byLen.get(s.length)!.push(s);
  }
  const batches: TokenBatch[] = [];
  for (const [seqLen, seqs] of byLen) {
    const rowsPerRun = Math.max(1, Math.floor(tokensPerRun / seqLen));
    for (let off = 0; off < seqs.length; off += rowsPerRun) {
      const group = seqs.slice(off, off + rowsPerRun);
      const ids = new Int32Array(group.length * seqLen);
      group.forEach((s, r) => ids.set(s, r * seqLen));
      batches.push({ rows: group.length, seqLen, ids });
    }
  }
  return batches;
}
