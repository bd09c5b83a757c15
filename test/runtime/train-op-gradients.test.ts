import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { causalMask, ropeTables } from '../../src/runtime/train/attention-constants.ts';
import type { DiffGraph } from '../../src/runtime/train/diff-graph.ts';
import { causalAttention, dotLoss, embedding, matmulWT, nextTokenLoss, rmsNorm, rope, swiglu } from '../../src/runtime/train/diff-ops.ts';
import { type BuildLoss, checkGradients, F32_TOLERANCE, FD_TOLERANCE_F64, type FloatInput, type IntInput, noise } from './helpers/gradient-check.ts';

/**
 * Each differentiable op's closed-form backward against central differences. The op's output is
 * reduced to a scalar with a fixed random weighting R (loss = Σ out ⊙ R), so every output element
 * matters. Tolerances (norm-wise relative error): float64 analytic vs float64 central differences
 * ≤ 1e-8 (measured ~1e-10); float32 analytic vs float64 analytic ≤ 1e-5 (measured ~1e-7).
 */

const numel = (dims: number[]) => dims.reduce((a, b) => a * b, 1);
let seed = 1;
const param = (name: string, dims: number[], scale = 1, offset = 0): FloatInput => ({ name, dims, data: noise(numel(dims), seed++, scale).map((v) => v + offset), trainable: true });
const data = (name: string, dims: number[], values?: Float64Array): FloatInput => ({ name, dims, data: values ?? noise(numel(dims), seed++), trainable: false });
const ints = (name: string, values: number[]): IntInput => ({ name, dims: [values.length], data: BigInt64Array.from(values.map(BigInt)) });

async function assertGradientsMatch(floats: FloatInput[], intInputs: IntInput[], build: BuildLoss) {
  for (const r of await checkGradients(floats, intInputs, build)) {
    if (process.env.SHOW_ERRORS) console.log(r);
    assert.ok(r.fdError <= FD_TOLERANCE_F64, `${r.name}: float64 analytic vs finite differences ${r.fdError.toExponential(2)} > ${FD_TOLERANCE_F64}`);
    assert.ok(r.f32Error <= F32_TOLERANCE, `${r.name}: float32 vs float64 gradient ${r.f32Error.toExponential(2)} > ${F32_TOLERANCE}`);
  }
}

/** loss = Σ op(...) ⊙ R, with R a data input of the output's shape. */
const weighted = (outDims: number[], op: (dg: DiffGraph) => string): [FloatInput, BuildLoss] => {
  const r = data('R', outDims);
  return [r, (dg) => dotLoss(dg, op(dg), 'R')];
};

const logSoftmaxRows = (x: Float64Array, rows: number, cols: number) => {
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * cols, (r + 1) * cols);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    for (let c = 0; c < cols; c++) out[r * cols + c] = row[c]! - lse;
  }
  return out;
};

describe('closed-form backward of each op matches finite differences (f64 ≤ 1e-8, f32 vs f64 ≤ 1e-5)', () => {
  it('MatMul y = x·Wᵀ: gradients of x and W', async () => {
    const [r, build] = weighted([5, 3], (dg) => matmulWT(dg, 'x', 'W'));
    await assertGradientsMatch([param('x', [5, 4]), param('W', [3, 4]), r], [], build);
  });

  it('RMSNorm: gradients of x and the gain γ', async () => {
    const [r, build] = weighted([5, 6], (dg) => rmsNorm(dg, 'x', 'gamma', 1e-5));
    await assertGradientsMatch([param('x', [5, 6]), param('gamma', [6], 0.2, 1), r], [], build);
  });

  it('RoPE (rotate-half, scaled llama3 frequencies) on [B, KV, G, T, D]', async () => {
    const dims = [2, 2, 2, 5, 6];
    const ropeSpec = { theta: 100, scaling: { type: 'llama3' as const, factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8 } };
    const [r, build] = weighted(dims, (dg) => rope(dg, 'x', ropeTables(dg, ropeSpec, 6, 5)));
    await assertGradientsMatch([param('x', dims), r], [], build);
  });

  it('causal GQA softmax attention: gradients of q, k (shared by 3 query heads) and v', async () => {
    const [B, KV, G, T, D] = [2, 2, 3, 5, 4];
    const [r, build] = weighted([B, KV, G, T, D], (dg) => causalAttention(dg, 'q', 'k', 'v', 1 / Math.sqrt(D), causalMask(dg, T)));
    await assertGradientsMatch([param('q', [B, KV, G, T, D]), param('k', [B, KV, 1, T, D]), param('v', [B, KV, 1, T, D]), r], [], build);
  });

  it('SwiGLU silu(gate) ⊙ up: gradients of gate and up', async () => {
    const [r, build] = weighted([5, 6], (dg) => swiglu(dg, 'gate', 'up'));
    await assertGradientsMatch([param('gate', [5, 6], 3), param('up', [5, 6]), r], [], build);
  });

  it('embedding lookup with repeated ids: the table gradient adds the rows of every occurrence', async () => {
    const [r, build] = weighted([6, 3], (dg) => embedding(dg, 'table', 'ids', 7, 3));
    await assertGradientsMatch([param('table', [7, 3]), r], [ints('ids', [1, 4, 1, 6, 0, 1])], build);
  });

  it('next-token cross-entropy, weighted mean with an ignored position: gradient of the logits', async () => {
    const build: BuildLoss = (dg) => nextTokenLoss(dg, 'logits', 7, { targets: 'targets', weights: 'weights' }).loss;
    await assertGradientsMatch([param('logits', [5, 7], 3), data('weights', [5], Float64Array.of(1, 1, 0, 1, 1))], [ints('targets', [3, 0, 6, 6, 2])], build);
  });

  for (const alpha of [1, 0.3]) {
    it(`distillation α·KL(teacher ‖ student) + (1 − α)·CE with α = ${alpha}: gradient of the logits`, async () => {
      const teacher = data('teacher', [5, 7], logSoftmaxRows(noise(35, 99, 3), 5, 7));
      const build: BuildLoss = (dg) => nextTokenLoss(dg, 'logits', 7, { targets: 'targets', weights: 'weights', teacher: { logProbs: 'teacher', alpha: 'alpha' } }).loss;
      await assertGradientsMatch(
        [param('logits', [5, 7], 3), data('weights', [5], Float64Array.of(1, 1, 1, 0, 1)), teacher, data('alpha', [], Float64Array.of(alpha))],
        [ints('targets', [3, 0, 6, 6, 2])],
        build,
      );
    });
  }
});
