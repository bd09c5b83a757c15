import type { DiffGraph } from './diff-graph.ts';

/**
 * Differentiable ops of a LLaMA block, each a forward in plain ONNX ops plus its closed-form
 * backward (registered on the DiffGraph tape). Shapes are stated per op; N is the number of
 * tokens (batch × seq, flattened), B/KV/G/T/D are batch, KV heads, query heads per KV head,
 * sequence and head width. Gradient checks for each op: test/runtime/train-op-gradients.test.ts.
 */

/** a + b, same shapes. */
export function add(dg: DiffGraph, a: string, b: string): string {
  const y = dg.op('Add', [a, b]);
  dg.define([y], [a, b], () => {
    const dy = dg.grad(y);
    if (!dy) return;
    dg.accumulate(a, dy);
    dg.accumulate(b, dy);
  });
  return y;
}

/** y + b for y [N, out] and a bias b [out] broadcast over the rows; db = Σ_rows dy. */
export function addBias(dg: DiffGraph, y: string, b: string): string {
  const out = dg.op('Add', [y, b]);
  dg.define([out], [y, b], () => {
    const dy = dg.grad(out);
    if (!dy) return;
    dg.accumulate(y, dy);
    if (dg.requiresGrad(b)) dg.accumulate(b, dg.op('ReduceSum', [dy, dg.ints(0)], { keepdims: { i: 0 } }));
  });
  return out;
}

/** x · s for a constant s. */
export function scale(dg: DiffGraph, x: string, s: number): string {
  const y = dg.op('Mul', [x, dg.scalar(s)]);
  dg.define([y], [x], () => {
    const dy = dg.grad(y);
    if (dy) dg.accumulate(x, dg.op('Mul', [dy, dg.scalar(s)]));
  });
  return y;
}

/**
 * y = x · Wᵀ: x [N, in], W [out, in] (Hugging Face layout, so trainable weights are fed and
 * updated as stored). dx = dy · W, dW = dyᵀ · x.
 */
export function matmulWT(dg: DiffGraph, x: string, w: string): string {
  const y = dg.op('MatMul', [x, dg.op('Transpose', [w], { perm: { ints: [1, 0] } })]);
  dg.define([y], [x, w], () => {
    const dy = dg.grad(y);
    if (!dy) return;
    if (dg.requiresGrad(x)) dg.accumulate(x, dg.op('MatMul', [dy, w]));
    if (dg.requiresGrad(w)) dg.accumulate(w, dg.op('MatMul', [dg.op('Transpose', [dy], { perm: { ints: [1, 0] } }), x]));
  });
  return y;
}

/** Reshape to `shape` (0 / −1 as in ONNX); the gradient is reshaped back to x's runtime shape. */
export function reshape(dg: DiffGraph, x: string, shape: number[]): string {
  const y = dg.op('Reshape', [x, dg.ints(...shape)]);
  dg.define([y], [x], () => {
    const dy = dg.grad(y);
    if (dy) dg.accumulate(x, dg.op('Reshape', [dy, dg.op('Shape', [x])]));
  });
  return y;
}

export function transpose(dg: DiffGraph, x: string, perm: number[]): string {
  const y = dg.op('Transpose', [x], { perm: { ints: perm } });
  const inverse = perm.map((_, i) => perm.indexOf(i));
  dg.define([y], [x], () => {
    const dy = dg.grad(y);
    if (dy) dg.accumulate(x, dg.op('Transpose', [dy], { perm: { ints: inverse } }));
  });
  return y;
}

/**
 * RMSNorm over the last axis: y = γ ⊙ x · r, r = (mean(x²) + ε)^−½; x [N, H], γ [H].
 * With n = x·r: dγ = Σ_tokens dy ⊙ n; dx = r · (dn − n · mean(dn ⊙ n)), dn = dy ⊙ γ.
 */
export function rmsNorm(dg: DiffGraph, x: string, gamma: string, eps: number): string {
  const ms = dg.op('ReduceMean', [dg.op('Mul', [x, x]), dg.ints(-1)], { keepdims: { i: 1 } });
  const r = dg.op('Reciprocal', [dg.op('Sqrt', [dg.op('Add', [ms, dg.scalar(eps)])])]);
  const n = dg.op('Mul', [x, r]);
  const y = dg.op('Mul', [n, gamma]);
  dg.define([y], [x, gamma], () => {
    const dy = dg.grad(y);
    if (!dy) return;
    if (dg.requiresGrad(gamma)) dg.accumulate(gamma, dg.op('ReduceSum', [dg.op('Mul', [dy, n]), dg.ints(0)], { keepdims: { i: 0 } }));
    if (dg.requiresGrad(x)) {
      const dn = dg.op('Mul', [dy, gamma]);
      const proj = dg.op('ReduceMean', [dg.op('Mul', [dn, n]), dg.ints(-1)], { keepdims: { i: 1 } });
      dg.accumulate(x, dg.op('Mul', [r, dg.op('Sub', [dn, dg.op('Mul', [n, proj])])]));
    }
  });
  return y;
}

/** Constant tables of rotate-half RoPE for one head width: cos/sin [T, D], rot [D, D] with x·rot = rotate_half(x). */
export interface RopeTables {
  cos: string;
  sin: string;
  rot: string;
  /** rotᵀ, for the backward pass (made on first use). */
  rotT: () => string;
}

/**
 * y = x ⊙ cos + rotate_half(x) ⊙ sin on x [..., T, D]; a rotation, so dx = dy ⊙ cos + (dy ⊙ sin) · rotᵀ.
 */
export function rope(dg: DiffGraph, x: string, t: RopeTables): string {
  const y = dg.op('Add', [dg.op('Mul', [x, t.cos]), dg.op('Mul', [dg.op('MatMul', [x, t.rot]), t.sin])]);
  dg.define([y], [x], () => {
    const dy = dg.grad(y);
    if (dy) dg.accumulate(x, dg.op('Add', [dg.op('Mul', [dy, t.cos]), dg.op('MatMul', [dg.op('Mul', [dy, t.sin]), t.rotT()])]));
  });
  return y;
}

/**
 * Causal grouped-query attention in MatMul/Softmax form: q [B, KV, G, T, D]; k, v [B, KV, 1, T, D]
 * (broadcast over the G query heads of a group); mask [T, T] additive (0 or a large negative).
 * S = q·kᵀ·scale + mask, P = softmax(S), O = P·v [B, KV, G, T, D].
 * Backward: dP = dO·vᵀ, dv = Σ_G Pᵀ·dO, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dq = dS·k·scale,
 * dk = Σ_G dSᵀ·q·scale.
 */
export function causalAttention(dg: DiffGraph, q: string, k: string, v: string, scaleFactor: number, mask: string): string {
  const swap = { perm: { ints: [0, 1, 2, 4, 3] } };
  const s = dg.op('Add', [dg.op('Mul', [dg.op('MatMul', [q, dg.op('Transpose', [k], swap)]), dg.scalar(scaleFactor)]), mask]);
  const p = dg.op('Softmax', [s], { axis: { i: -1 } });
  const o = dg.op('MatMul', [p, v]);
  dg.define([o], [q, k, v], () => {
    const dO = dg.grad(o);
    if (!dO) return;
    const sumGroups = (t: string) => dg.op('ReduceSum', [t, dg.ints(2)], { keepdims: { i: 1 } });
    if (dg.requiresGrad(v)) dg.accumulate(v, sumGroups(dg.op('MatMul', [dg.op('Transpose', [p], swap), dO])));
    if (!dg.requiresGrad(q) && !dg.requiresGrad(k)) return;
    const dP = dg.op('MatMul', [dO, dg.op('Transpose', [v], swap)]);
    const rowDot = dg.op('ReduceSum', [dg.op('Mul', [dP, p]), dg.ints(-1)], { keepdims: { i: 1 } });
    const dS = dg.op('Mul', [dg.op('Mul', [p, dg.op('Sub', [dP, rowDot])]), dg.scalar(scaleFactor)]);
    if (dg.requiresGrad(q)) dg.accumulate(q, dg.op('MatMul', [dS, k]));
    if (dg.requiresGrad(k)) dg.accumulate(k, sumGroups(dg.op('MatMul', [dg.op('Transpose', [dS], swap), q])));
  });
  return o;
}

/**
 * SwiGLU activation a = silu(gate) ⊙ up, silu(g) = g·σ(g); same shapes.
 * d up = da ⊙ silu(gate); d gate = da ⊙ up ⊙ σ(g)·(1 + g·(1 − σ(g))).
 */
export function swiglu(dg: DiffGraph, gate: string, up: string): string {
  const sig = dg.op('Sigmoid', [gate]);
  const silu = dg.op('Mul', [gate, sig]);
  const a = dg.op('Mul', [silu, up]);
  dg.define([a], [gate, up], () => {
    const da = dg.grad(a);
    if (!da) return;
    if (dg.requiresGrad(up)) dg.accumulate(up, dg.op('Mul', [da, silu]));
    if (dg.requiresGrad(gate)) {
      const dsilu = dg.op('Mul', [sig, dg.op('Add', [dg.scalar(1), dg.op('Mul', [gate, dg.op('Sub', [dg.scalar(1), sig])])])]);
      dg.accumulate(gate, dg.op('Mul', [dg.op('Mul', [da, up]), dsilu]));
    }
  });
  return a;
}

/**
 * Row lookup: table [V, H], ids [N] int64 → [N, H]. The gradient scatters-adds rows back (ScatterND
 * with reduction 'add': a token seen twice gets both rows) into the table's other gradient where
 * there is one (a tied LM head's, whose backward has run by then), else into a [V, H] zero tensor.
 */
export function embedding(dg: DiffGraph, table: string, ids: string, vocab: number, hidden: number): string {
  const y = dg.op('Gather', [table, ids], { axis: { i: 0 } });
  dg.define([y], [table], () => {
    const dy = dg.grad(y);
    if (!dy) return;
    const base =
      dg.takeContributions(table) ??
      dg.op('ConstantOfShape', [dg.ints(vocab, hidden)], {
        value: { t: { dims: [1], dataType: dg.typeCode, raw: new Uint8Array(dg.precision === 'float64' ? 8 : 4) } },
      });
    const index = dg.op('Unsqueeze', [ids, dg.ints(-1)]);
    dg.accumulate(table, dg.op('ScatterND', [base, index, dy], { reduction: { s: 'add' } }));
  });
  return y;
}

/** Σ x ⊙ r over all elements, a scalar: turns any op into a loss for gradient checks (dx = r). */
export function dotLoss(dg: DiffGraph, x: string, r: string): string {
  const y = dg.op('ReduceSum', [dg.op('Mul', [x, r])], { keepdims: { i: 0 } });
  dg.define([y], [x], () => {
    const dy = dg.grad(y);
    if (dy) dg.accumulate(x, dg.op('Mul', [r, dy]));
  });
  return y;
}

/** Inputs of the next-token loss that are data, not parameters. */
export interface LossTargets {
  /** [N] int64, the token each position should predict. */
  targets: string;
  /** [N] float, each position's weight (0 = ignored, e.g. padding); the loss is the weighted mean. */
  weights: string;
  /** Distillation: teacher log-probabilities [N, V] (finite) and the KL share α ∈ [0, 1] (scalar input). */
  teacher?: { logProbs: string; alpha: string };
}

export interface LossValues {
  /** The optimised scalar: CE, or α·KL + (1 − α)·CE with a teacher. */
  loss: string;
  ce: string;
  /** KL(teacher ‖ student), with a teacher. */
  kl?: string;
}

/**
 * Weighted mean next-token loss on logits [N, V]. Both terms share one gradient:
 * d logits = (softmax(logits) − target) · wₙ / Σw, target = α·p_teacher + (1 − α)·onehot. The
 * one-hot part is never materialised over the vocabulary: the target's log-probability is gathered
 * (GatherElements) and its −(1 − α)·wₙ added at the target column (ScatterElements, 'add'), so the
 * loss costs a handful of [N, V] passes, not a dozen. Targets must be valid ids (padding: 0, weight 0).
 */
export function nextTokenLoss(dg: DiffGraph, logits: string, vocab: number, t: LossTargets): LossValues {
  const logp = dg.op('LogSoftmax', [logits], { axis: { i: -1 } });
  const column = dg.op('Unsqueeze', [t.targets, dg.ints(-1)]); // [N, 1]
  const total = dg.op('Max', [dg.op('ReduceSum', [t.weights], { keepdims: { i: 0 } }), dg.scalar(1e-12)]);
  const wn = dg.op('Div', [t.weights, total]);
  const weightedMean = (perToken: string) => dg.op('ReduceSum', [dg.op('Mul', [perToken, wn])], { keepdims: { i: 0 } });
  const ce = weightedMean(dg.op('Neg', [dg.op('Reshape', [dg.op('GatherElements', [logp, column], { axis: { i: 1 } }), dg.ints(-1)])]));
  let loss = ce;
  let kl: string | undefined;
  let teacherShare: { pt: string; alpha: string; beta: string } | undefined;
  if (t.teacher) {
    const { logProbs, alpha } = t.teacher;
    const pt = dg.op('Exp', [logProbs]);
    kl = weightedMean(dg.op('ReduceSum', [dg.op('Mul', [pt, dg.op('Sub', [logProbs, logp])]), dg.ints(-1)], { keepdims: { i: 0 } }));
    const beta = dg.op('Sub', [dg.scalar(1), alpha]);
    loss = dg.op('Add', [dg.op('Mul', [alpha, kl]), dg.op('Mul', [beta, ce])]);
    teacherShare = { pt, alpha, beta };
  }
  dg.define([loss], [logits], () => {
    const dL = dg.grad(loss);
    if (!dL) return;
    const c = dg.op('Unsqueeze', [dg.op('Mul', [wn, dL]), dg.ints(-1)]); // [N, 1]
    const p = dg.op('Exp', [logp]);
    const soft = teacherShare ? dg.op('Sub', [p, dg.op('Mul', [teacherShare.alpha, teacherShare.pt])]) : p;
    const hot = dg.op('Neg', [teacherShare ? dg.op('Mul', [c, teacherShare.beta]) : c]);
    dg.accumulate(logits, dg.op('ScatterElements', [dg.op('Mul', [soft, c]), column, hot], { axis: { i: 1 }, reduction: { s: 'add' } }));
  });
  return { loss, ce, ...(kl && { kl }) };
}
