/**
 * A change this replica made to the serving state, kept until the manifest records it. Pending
 * changes are replayed onto whatever manifest is current when the write is tried again, so a write
 * that failed is neither lost nor overwrites what other replicas changed meanwhile.
 */
import type { HexDigest, ManifestSplit, ManifestState } from '../model-store/index.ts';

export type LocalChange =
  | { kind: 'add'; id: string; key: HexDigest; activate: boolean }
  | { kind: 'remove'; id: string }
  | { kind: 'active'; id: string }
  | { kind: 'split'; split: ManifestSplit | null };

export const EMPTY_STATE: ManifestState = { variants: [], active: null, split: null };

/** `state` with `change` made. */
export function applyLocalChange(state: ManifestState, change: LocalChange): ManifestState {
  switch (change.kind) {
    case 'add':
      return {
        ...state,
        variants: [...state.variants.filter((v) => v.id !== change.id), { id: change.id, key: change.key }],
        active: change.activate ? change.id : state.active,
      };
    case 'remove':
      return { ...state, variants: state.variants.filter((v) => v.id !== change.id), split: state.split?.variant === change.id ? null : state.split };
    case 'active':
      return { ...state, active: change.id };
    case 'split':
      return { ...state, split: change.split && { variant: change.split.variant, share: change.split.share } };
  }
}

/** "add 'mop-30'", "activate 'dense'", "split to 'mop-30'", ... for log lines and admin answers. */
export function describeLocalChange(change: LocalChange): string {
  switch (change.kind) {
    case 'add':
      return change.activate ? `add and activate '${change.id}'` : `add '${change.id}'`;
    case 'remove':
      return `remove '${change.id}'`;
    case 'active':
      return `activate '${change.id}'`;
    case 'split':
      return change.split ? `split ${Math.round(change.split.share * 100)}% to '${change.split.variant}'` : 'end the split';
  }
}

/**
 * The pending changes, made on top of manifest `base`, once another replica has written `next`:
 * a choice of active variant or split the other replica changed since `base` is the later one and
 * wins (ours is dropped, as a manifest write of ours would have been overwritten); per-variant
 * adds and removes stay, so a variant served here is not unloaded for want of its record.
 */
export function rebasePending(pending: readonly LocalChange[], base: ManifestState, next: ManifestState): LocalChange[] {
  const activeTaken = base.active !== next.active;
  const splitTaken = base.split?.variant !== next.split?.variant || base.split?.share !== next.split?.share;
  const out: LocalChange[] = [];
  for (const c of pending) {
    if (c.kind === 'active' && activeTaken) continue;
    if (c.kind === 'split' && splitTaken) continue;
    out.push(c.kind === 'add' && c.activate && activeTaken ? { ...c, activate: false } : c);
  }
  return out;
}
