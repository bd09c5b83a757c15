import type { ExecutionTarget } from '../device/device.ts';
import type { ModelSpec } from '../model/spec.ts';
import { ContextLengthError } from './errors.ts';
import type { SlotKv } from './kv-store.ts';

/** One token to append to one slot's sequence in a batched decode step. */
export interface DecodeEntry {
  slot: number;
  token: number;
}

/** Tokens to append to one slot's sequence in a batched prefill. */
export interface PrefillEntry {
  slot: number;
  tokens: readonly number[];
}

/**
 * What the scheduler and the server need of a model ready to run: slots of cached sequences,
 * prefill and batched decode returning logits. ModelSession (ONNX Runtime, every provider) and
 * NativeCudaSession (src/runtime/cuda) are the two kinds.
 */
export interface DecoderSession {
  readonly spec: ModelSpec;
  readonly target: ExecutionTarget;
  /** Longest prompt piece run at once. */
  readonly prefillChunk: number;
  readonly maxBatch: number;
  readonly maxContext: number;
  /** Tokens cached for a slot. */
  length(slot: number): number;
  /** Forget a slot's sequence. */
  reset(slot: number): void;
  /** Append tokens to a slot; logits of the last position ([vocab]). */
  prefill(slot: number, tokens: readonly number[]): Promise<Float32Array>;
  /**
   * Prefill several slots (each at most once) in as few runs as the session can: logits of each
   * entry's last position ([vocab]), in entry order, whatever the session's logits mode. Optional:
   * the scheduler calls `prefill` per entry where it is absent. Entries the session cannot batch
   * run one by one.
   */
  prefillBatch?(entries: readonly PrefillEntry[]): Promise<Float32Array[]>;
  /** One step for several slots at once; logits per entry. */
  decode(entries: readonly DecodeEntry[]): Promise<Float32Array[]>;
  /** Copies of slots' cached positions (prefix caching); absent where the cache is out of JavaScript's reach. */
  readonly slotKv?: SlotKv | undefined;
  release(): Promise<void>;
}

/** A slot index check shared by every session kind. */
export function checkSlot(slot: number, maxBatch: number): void {
  if (!Number.isInteger(slot) || slot < 0 || slot >= maxBatch) throw new RangeError(`slot ${slot} is outside 0..${maxBatch - 1}`);
}

/** Entries of one decode step: valid slots, each once, each with room for one more token. */
export function checkDecodeEntries(session: Pick<DecoderSession, 'maxBatch' | 'maxContext' | 'length'>, entries: readonly DecodeEntry[]): void {
  const seen = new Set<number>();
  for (const e of entries) {
    checkSlot(e.slot, session.maxBatch);
    if (seen.has(e.slot)) throw new RangeError(`slot ${e.slot} appears twice in one decode step`);
    if (session.length(e.slot) >= session.maxContext) throw new ContextLengthError(`slot ${e.slot} is full: the context of ${session.maxContext} tokens is used up`);
    seen.add(e.slot);
  }
}
