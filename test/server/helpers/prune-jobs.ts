/** Waiting for prune jobs from a test: until none is running (succeeded, failed or cancelled). */
import type { PruneJobView } from '../../../src/service/prune/prune-job-view.ts';
import { waitFor } from './server.ts';

/** Polls `jobs.list()` until no job is running; a job's status changes only once its result is registered. */
export async function waitForPruneJobs(jobs: { list(): PruneJobView[] }, ms = 300_000): Promise<void> {
  await waitFor(() => !jobs.list().some((j) => j.status === 'running'), ms, 'the running prune job to finish');
}
