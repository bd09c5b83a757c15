import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runKernelChecks } from '../../scripts/cuda/kernel-check.ts';
import { CudaEmulator } from '../../scripts/cuda/kernel-emulator.ts';
import type { LaunchValue } from '../../src/runtime/cuda/native-binding.ts';
import { Float64CudaKernels } from './helpers/float64-cuda-kernels.ts';

/** A "device" whose attention kernel is off by 0.5 in one output: what a broken GPU kernel looks like. */
class WrongAttention extends CudaEmulator {
  override launch(kernel: string, grid: [number, number, number], block: [number, number, number], shared: number, types: string, values: LaunchValue[]): void {
    super.launch(kernel, grid, block, shared, types, values);
    if (kernel === 'mop_attention') this.f32(values[0])[1]! += 0.5;
  }
}

describe('per-kernel check of the native CUDA kernels (run on the GPU by gpu-check)', () => {
  it('passes kernels that compute what kernels.cu specifies: the reference agrees with plain float64 math on every case', () => {
    // The "device" here is an independent float64 version of each kernel, so this also proves
    // the reference (the emulator) right, which the GPU check takes on trust.
    const results = runKernelChecks(new Float64CudaKernels());
    assert.ok(results.length >= 12);
    for (const r of results) assert.equal(r.pass, true, `${r.name}: ${r.error ?? r.relativeError}`);
  });

  it('names exactly the kernel that is wrong', () => {
    const failed = runKernelChecks(new WrongAttention()).filter((r) => !r.pass).map((r) => r.name);
    assert.deepEqual(failed, ['attention, head size 64', 'attention, head size 8']);
  });
});
