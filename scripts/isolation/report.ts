import type { PhaseFigures } from './phases.ts';
import type { TargetResult } from './targets.ts';

/** What `npm run bench:isolation` writes as JSON (and renders as Markdown). */
export interface IsolationReport {
  version: 1;
  tool: 'bench-isolation';
  startedAt: string;
  /** The command line, as run. */
  command: string;
  note: string | null;
  quick: boolean;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    node: string;
    os: string;
    /** 1-minute load average when the run started and ended (others' work on a shared machine shows here). */
    loadAverage: { start: number; end: number };
  };
  server: {
    model: string;
    /** Environment the server child ran with (thread split). */
    env: Record<string, string>;
    /** For each variable of `env`: the value the server's start-up configuration shows, or null (ignored). */
    settingsShown: Record<string, string | null>;
    maxBatch: number;
  };
  load: { maxTokens: number; phaseSec: number; stream: true; ignoreEos: true };
  prune: { target: number; samples: number; seqLen: number; strategy: 'mop'; recovery?: string };
  results: ConcurrencyResult[];
  targets: TargetResult[];
  allTargetsMet: boolean;
  elapsedSec: number;
}

export interface ConcurrencyResult {
  concurrency: number;
  pruneJob: { status: string; seconds: number; error: string | null; variant: string | null };
  /** Probes not sent because 50 of the same endpoint were still unanswered (a stall). */
  skippedProbes: number;
  phases: PhaseFigures[];
}
