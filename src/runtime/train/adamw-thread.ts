import { parentPort, workerData } from 'node:worker_threads';
import { type AdamWOptions, adamwStep, updateTensor } from './adamw.ts';
import { sumOfSquares } from './grad-clip.ts';

/**
 * A worker thread of ThreadedAdamW (`threaded-adamw.ts`): it owns the AdamW moments and the last
 * good weights of its share of the tensors. Weights and gradients come in (transferred, not
 * copied) with `gradients`; the weights go back, updated or restored, with the answer to `update`
 * or `restore`.
 */
export interface AdamWThreadInit {
  options: AdamWOptions;
  /** This thread's tensors: their starting weights (a copy: the first last-good weights) and whether decay applies. */
  tensors: { name: string; data: Float32Array; decay: boolean }[];
}

export type AdamWThreadRequest =
  /** Take this step's weights and gradients (in the init's tensor order); answer each tensor's sum of squared gradients. */
  | { kind: 'gradients'; weights: Float32Array[]; grads: Float32Array[] }
  /** Apply update number `t` to the held weights and hand them back. */
  | { kind: 'update'; t: number; lr: number; gradScale: number }
  /** Hand back the last good weights (into `weights` when given, else into the held ones). */
  | { kind: 'restore'; weights?: Float32Array[] };

export type AdamWThreadReply = { kind: 'sums'; sums: number[] } | { kind: 'weights'; weights: Float32Array[] } | { kind: 'error'; message: string };

const init = workerData as AdamWThreadInit;
const count = init.tensors.length;
const lastGood = init.tensors.map((t) => t.data);
const m = init.tensors.map((t) => new Float32Array(t.data.length));
const v = init.tensors.map((t) => new Float32Array(t.data.length));
let weights: Float32Array[] | undefined;
let grads: Float32Array[] | undefined;

function answer(request: AdamWThreadRequest): { reply: AdamWThreadReply; transfer: ArrayBuffer[] } {
  switch (request.kind) {
    case 'gradients': {
      if (request.weights.length !== count || request.grads.length !== count) throw new Error(`expected ${count} weights and gradients, got ${request.weights.length} and ${request.grads.length}`);
      weights = request.weights;
      grads = request.grads;
      return { reply: { kind: 'sums', sums: grads.map(sumOfSquares) }, transfer: [] };
    }
    case 'update': {
      if (!weights || !grads) throw new Error('update without gradients');
      const s = adamwStep(init.options, request.t, request.lr, request.gradScale);
      for (let k = 0; k < count; k++) updateTensor(s, init.tensors[k]!.decay, weights[k]!, grads[k]!, m[k]!, v[k]!, lastGood[k]);
      return handBack();
    }
    case 'restore': {
      weights = request.weights ?? weights;
      if (!weights) throw new Error('restore without weights');
      for (let k = 0; k < count; k++) weights[k]!.set(lastGood[k]!);
      return handBack();
    }
  }
}

function handBack(): { reply: AdamWThreadReply; transfer: ArrayBuffer[] } {
  const out = weights!;
  weights = undefined;
  grads = undefined;
  return { reply: { kind: 'weights', weights: out }, transfer: out.map((w) => w.buffer as ArrayBuffer) };
}

parentPort!.on('message', (request: AdamWThreadRequest) => {
  try {
    const { reply, transfer } = answer(request);
    parentPort!.postMessage(reply, transfer);
  } catch (e) {
    parentPort!.postMessage({ kind: 'error', message: e instanceof Error ? e.message : String(e) } satisfies AdamWThreadReply);
  }
});
