/**
 * The one admission rule, used by the scheduler in the engine worker and by its client on the
 * main thread (which refuses at once, before a message crosses threads): requests beyond the free
 * batch slots, and prompt scorings beyond the one scoring slot, are waiting; at most `maxQueue`
 * requests of both kinds together wait.
 */
import { QueueFullError } from './scheduler-types.ts';

/** Requests a scheduler holds (running or waiting), by kind. */
export interface HeldRequests {
  generations: number;
  scorings: number;
}

/** Requests of this kind run at once; the rest wait. */
const SCORING_SLOTS = 1;

/** How many held requests are waiting, given `slots` batch slots. */
export function waitingRequests(held: HeldRequests, slots: number): number {
  return Math.max(0, held.generations - slots) + Math.max(0, held.scorings - SCORING_SLOTS);
}

/** Throws QueueFullError when one more request of `kind` would have to wait and the queue is full. */
export function admitOrThrow(kind: keyof HeldRequests, held: HeldRequests, slots: number, maxQueue: number): void {
  const wouldWait = kind === 'generations' ? held.generations >= slots : held.scorings >= SCORING_SLOTS;
  if (wouldWait && waitingRequests(held, slots) >= maxQueue) throw new QueueFullError(`the request queue is full (${maxQueue} waiting)`);
}
