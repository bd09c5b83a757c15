import type { TrainingBatch } from './batch-sampler.ts';

/**
 * Distillation targets per recovery window, computed once and reused: windows repeat every epoch,
 * and the teacher (the dense model) never changes during recovery. Each window's row of
 * log-probabilities [seqLen, vocab] is kept while the budget lasts; a batch with a window outside
 * the cache runs the teacher for the whole batch. Which windows are cached depends only on the
 * batch order, so a seeded run stays repeatable.
 */
/** Pieces of a batch per run, and the signal checked between them (see TrainingSession.run). */
export interface PieceOptions {
  rowsPerRun?: number;
  signal?: AbortSignal;
}

export interface TeacherModel {
  /** [rows, seqLen, vocab] log-probabilities for a batch. */
  logProbs(batch: TrainingBatch, o?: PieceOptions): Promise<Float32Array>;
}

export class CachedTeacher implements TeacherModel {
  private readonly rows = new Map<number, Float32Array>();
  private used = 0;
  /** Teacher passes run (for reports and tests). */
  passes = 0;

  constructor(
    private readonly teacher: TeacherModel,
    private readonly rowFloats: number,
    private readonly budgetBytes: number,
  ) {}

  async logProbs(batch: TrainingBatch, o: PieceOptions = {}): Promise<Float32Array> {
    const n = this.rowFloats;
    if (batch.windows.every((w) => this.rows.has(w))) {
      const out = new Float32Array(batch.rows * n);
      batch.windows.forEach((w, r) => out.set(this.rows.get(w)!, r * n));
      return out;
    }
    this.passes++;
    const out = await this.teacher.logProbs(batch, o);
    batch.windows.forEach((w, r) => {
      if (this.rows.has(w) || this.used + n * 4 > this.budgetBytes) return;
      this.rows.set(w, out.slice(r * n, (r + 1) * n));
      this.used += n * 4;
    });
    return out;
  }

  get cachedBytes(): number {
    return this.used;
  }
}
