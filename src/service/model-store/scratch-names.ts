/**
 * Names of the store's scratch directories and files (tmp/ and trash/):
 * `<label>.<owner>.<pid>.<random>`. The owner is this machine (hostname plus pid namespace), so a
 * cleaner only judges a pid it can actually see: scratch of another host or container is removed
 * by age alone, never because its pid happens not to exist here.
 */
import { randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

/** This process's machine identity, dot-free so names split unambiguously. */
export const ownerId: string = (() => {
  let ns = '';
  try {
    ns = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '';
  } catch {
    // not Linux: the hostname alone
  }
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, '_') || 'host';
  return ns === '' ? host : `${host}-${ns}`;
})();

/** Scratch paths this process is writing right now (shared by every store instance in the process). */
const inUse = new Set<string>();

export function scratchName(label: string): string {
  return `${label}.${ownerId}.${process.pid}.${randomBytes(6).toString('hex')}`;
}

export interface ScratchOwner {
  owner: string;
  pid: number;
}

export function parseScratchName(name: string): ScratchOwner | undefined {
  const parts = name.split('.');
  if (parts.length !== 4) return undefined;
  const pid = Number(parts[2]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { owner: parts[1]!, pid };
}

export function markScratchInUse(path: string): void {
  inUse.add(path);
}

export function releaseScratch(path: string): void {
  inUse.delete(path);
}

/**
 * Whether scratch at `path` is left over from a crash: older than `staleAfterMs` (any owner), or
 * owned by this machine and by a pid that no longer runs, or by this very pid but not in use by
 * this process (a restarted container often gets the same pid back).
 */
export function isAbandonedScratch(path: string, name: string, ageMs: number, staleAfterMs: number): boolean {
  if (ageMs > staleAfterMs) return true;
  const owner = parseScratchName(name);
  if (owner === undefined || owner.owner !== ownerId) return false;
  if (owner.pid === process.pid) return !inUse.has(path);
  return !pidIsAlive(owner.pid);
}

function pidIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM';
  }
}
