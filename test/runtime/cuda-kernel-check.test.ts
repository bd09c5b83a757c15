import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runKernelChecks } from '../../scripts/cuda/kernel-check.ts';
import { CudaEmulator } from '../../scripts/cuda/kernel-emulator.ts';
import type { LaunchValue } from '../../src/runtime/cuda/native-binding.ts';

/** A "device" whose attention kernel is off by 0.5 in one output: what a broken GPU kernel looks like. */
class WrongAttention extends CudaEmulator {
  override launch(kernel: string, grid: [number, number, number], block: [number, number, number], shared: number, types: string, values: LaunchValue[]): void {
    super.launch(kernel, grid, block, shared, types, values);
    if (kernel === 'mop_attention') this.f32(values[0])[1]! += 0.5;
  }
}

describe('per-kernel check of the native CUDA kernels (run on the GPU by gpu-check)', () => {
  it('runs every case and passes when the device computes what the reference computes', () => {
    const results = runKernelChecks(new CudaEmulator());
    assert.ok(results.length >= 12);
    for (const r of results) assert.equal(r.pass, true, `${r.name}: ${r.error ?? r.relativeError}`);
  });

  it('names exactly the kernel that is wrong', () => {
    const failed = runKernelChecks(new WrongAttention()).filter((r) => !r.pass).map((r) => r.name);
    assert.deepEqual(failed, ['attention, head size 64', 'attention, head size 8']);
  });
});
