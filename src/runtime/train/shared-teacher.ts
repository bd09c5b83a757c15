import type { ModelSpec } from '../model/spec.ts';
import type { Weights } from '../model/tensor.ts';
import { CachedTeacher } from './teacher-cache.ts';
import { TeacherSession } from './training-session.ts';

/**
 * A distillation teacher kept for every recovery of one prune (each candidate's brief run and the
 * final one). The teacher is the model being pruned and never changes meanwhile, so its session is
 * built once and each window's log-probabilities are computed once for the whole prune, instead of
 * once per run. Which windows are cached still depends only on the (seeded) batch orders, so a
 * prune stays repeatable. `release()` when the prune ends.
 */
export class SharedTeacher {
  private built: { seqLen: number; threads: number | undefined; session: TeacherSession; cache: CachedTeacher } | undefined;
  /** Teacher sessions built so far (one per prune unless the sequence length or threads change). */
  sessionsBuilt = 0;

  constructor(readonly model: { spec: ModelSpec; weights: Weights }) {}

  /** The cached teacher for windows of `seqLen` tokens; the first call's budget holds for the prune. */
  async cached(seqLen: number, threads: number | undefined, budgetBytes: number): Promise<CachedTeacher> {
    if (this.built && this.built.seqLen === seqLen && this.built.threads === threads) return this.built.cache;
    await this.release();
    const session = await TeacherSession.create(this.model.spec, this.model.weights, seqLen, threads);
    this.sessionsBuilt++;
    this.built = { seqLen, threads, session, cache: new CachedTeacher(session, seqLen * this.model.spec.vocabSize, budgetBytes) };
    return this.built.cache;
  }

  async release(): Promise<void> {
    const b = this.built;
    this.built = undefined;
    await b?.session.release();
  }
}
