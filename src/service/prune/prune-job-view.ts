import type { MopProgress } from '../../mop/mop.ts';
import type { PruneReport } from '../../mop/report.ts';
import type { PruneRecipe } from './prune-options.ts';

/** A prune job as asked: the recipe plus where the result goes. */
export interface PruneJobRequest extends PruneRecipe {
  /** Variant to prune (default: the dense model the server started with). */
  source?: string;
  /** Id of the new variant (default: `<strategy>-<percent>`, made unique). */
  id?: string;
  /** Make the result the active variant when done (default true). */
  activate: boolean;
}

export type PruneJobStatus = 'running' | 'succeeded' | 'failed' | 'cancelled';

/** What the API shows of a job. */
export interface PruneJobView {
  id: string;
  status: PruneJobStatus;
  request: PruneJobRequest;
  createdAt: string;
  finishedAt: string | null;
  progress: MopProgress | null;
  /** The variant the job registered (when it succeeded). */
  variant: string | null;
  error: string | null;
  /** The job's model-store key (null without a store). */
  storeKey: string | null;
  /** The result came from the model store: nothing was pruned. */
  fromStore: boolean;
  /** The full MoP report, when it succeeded (omitted from lists). */
  report?: PruneReport;
}
