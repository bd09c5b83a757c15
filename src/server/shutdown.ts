/**
 * Graceful shutdown, bounded: stop taking work, let in-flight requests finish within the grace
 * period, release the engines and close the sockets. A part that does not answer within its share
 * is logged and left behind, so the process exits anyway.
 */
import type { Server } from 'node:http';
import type { ModelService } from '../service/model-service.ts';
import type { ServerState } from './app.ts';
import { settlesWithin } from './bounded-wait.ts';
import { closeServer } from './listeners.ts';

/**
 * How long past --shutdown-grace-ms a shutdown may take at most: an engine's answer to the drain
 * (it finishes the step it is in), then releasing the engines and closing the socket.
 */
export const shutdownMarginMs = 8000;
/** Past the grace period, how long the drain waits for engines to answer (one model step). */
const drainAnswerMs = 5000;
/** How long the engines get to free their sessions, and open connections to finish, after the drain. */
const releaseMs = 2000;

export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Free the engines, waiting at most releaseMs; whether they answered. */
export function releaseEngines(service: ModelService, onError: (e: unknown) => void): Promise<boolean> {
  return settlesWithin(service.release(), releaseMs, onError);
}

export interface ShutdownParts {
  service: ModelService;
  state: ServerState;
  servers: readonly Server[];
  /** Closes the /admin/events socket. */
  closeEvents: () => void;
  graceMs: number;
  log: (line: string) => void;
}

/** `close()` for a running server: the first call shuts down, later ones wait for the same shutdown. */
export function shutdownOnce(parts: ShutdownParts): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => (closing ??= shutDown(parts));
}

async function shutDown({ service, state, servers, closeEvents, graceMs, log }: ShutdownParts): Promise<void> {
  state.draining = true;
  log(`shutting down: draining in-flight requests (grace ${graceMs} ms)`);
  closeEvents();
  const drainBoundMs = graceMs + drainAnswerMs;
  const drained = await settlesWithin(service.drain(graceMs), drainBoundMs, (e) => log(`shutting down: the drain failed: ${errorText(e)}`));
  if (!drained) log(`shutting down: in-flight work did not end within ${drainBoundMs} ms (an engine, a prune or the model store does not answer); going on without it`);
  // Releasing fails what an engine still holds, so those streams get an error event while the sockets close.
  const released = releaseEngines(service, (e) => log(`shutting down: releasing the engines failed: ${errorText(e)}`));
  await Promise.all([...servers.map((s) => closeServer(s, releaseMs)), released]);
  if (!(await released)) log(`shutting down: an engine did not answer release within ${releaseMs} ms; leaving its thread to the process exit`);
  log('shut down');
}
