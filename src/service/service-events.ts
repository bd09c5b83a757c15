/**
 * What the service tells whoever listens (the admin WebSocket, logs): job progress and changes to
 * the set of served variants. Plain data, so the HTTP layer can forward it as JSON.
 */
import type { PruneJobView } from './prune/prune-job-view.ts';
import type { TrafficSplit } from './variant-registry.ts';

export type ServiceEvent =
  | { type: 'job'; job: PruneJobView }
  | { type: 'model_added'; id: string; compressionRatio: number; parameters: number }
  | { type: 'model_removed'; id: string }
  | { type: 'model_status'; id: string; status: string; reason: string | null }
  | { type: 'active_changed'; active: string; previous: string | undefined }
  | { type: 'split_changed'; split: TrafficSplit | null };

/** A fan-out of service events to any number of listeners. */
export class ServiceEvents {
  private readonly listeners = new Set<(e: ServiceEvent) => void>();

  publish(event: ServiceEvent): void {
    for (const l of this.listeners) l(event);
  }

  subscribe(listener: (e: ServiceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
