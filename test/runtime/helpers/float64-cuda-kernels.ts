import { CudaEmulator } from '../../../scripts/cuda/kernel-emulator.ts';
import type { CudaBinding, CudaGraph, LaunchValue, NativeProbe } from '../../../src/runtime/cuda/native-binding.ts';
import { f16ToNumber, numberToF16 } from '../../../src/runtime/model/half.ts';

/**
 * A second, independent JavaScript version of kernels.cu: each kernel written from its contract
 * (the comment above it in kernels.cu) as plain float64 math, with no float32 rounding and no
 * code shared with the emulator's kernels. Checking the emulator against it shows the emulator,
 * which gpu-check uses as the reference for the real kernels, computes what the kernels should.
 * Device memory is the emulator's (only its allocator, uploads and downloads are used).
 */
export class Float64CudaKernels implements CudaBinding {
  private readonly memory = new CudaEmulator();
  private capture: (() => void)[] | null = null;

  probe(): NativeProbe {
    return this.memory.probe();
  }
  init(): void {}
  alloc(bytes: number): bigint {
    return this.memory.alloc(bytes);
  }
  free(ptr: bigint): void {
    this.memory.free(ptr);
  }
  upload(ptr: bigint, data: ArrayBufferView): void {
    this.memory.upload(ptr, data);
  }
  download(ptr: bigint, into: ArrayBufferView): void {
    this.memory.download(ptr, into);
  }
  setMaxDynamicShared(): void {}
  synchronize(): void {}
  captureBegin(): void {
    this.capture = [];
  }
  captureEnd(): CudaGraph {
    const steps = this.capture ?? [];
    this.capture = null;
    return steps as unknown as CudaGraph;
  }
  graphLaunch(graph: CudaGraph): void {
    for (const step of graph as unknown as (() => void)[]) step();
  }

  launch(kernel: string, grid: [number, number, number], _block: [number, number, number], _shared: number, _types: string, values: LaunchValue[]): void {
    const run = contracts[kernel];
    if (!run) throw new Error(`no kernel ${kernel}`);
    const step = () => run(this.memory, grid, values);
    if (this.capture) this.capture.push(step);
    else step();
  }
}

type Contract = (m: CudaEmulator, grid: [number, number, number], v: LaunchValue[]) => void;
const int = (v: LaunchValue | undefined) => Number(v);
const fromHalf = (a: Uint16Array, i: number) => f16ToNumber(a[i]!);

const contracts: Record<string, Contract> = {
  // out[r, :] = embed[tokens[r], :]
  mop_embed(m, [rows], [out, embed, tokens, hidden]) {
    const H = int(hidden), o = m.f32(out), E = m.f16(embed), t = m.i32(tokens);
    for (let r = 0; r < rows; r++) for (let i = 0; i < H; i++) o[r * H + i] = fromHalf(E, t[r]! * H + i);
  },
  // out[r, :] = in[r, :] / sqrt(mean(in[r, :]²) + eps) · gamma
  mop_rmsnorm(m, [rows], [out, input, gamma, hidden, eps]) {
    const H = int(hidden), x = Float64Array.from(m.f32(input)), o = m.f32(out), g = m.f16(gamma);
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * H, (r + 1) * H);
      const meanSquare = row.reduce((s, v) => s + v * v, 0) / H;
      const inv = 1 / Math.sqrt(meanSquare + int(eps));
      for (let i = 0; i < H; i++) o[r * H + i] = row[i]! * inv * fromHalf(g, i);
    }
  },
  // out[r, o] = (accumulate ? out[r, o] : 0) + Σ_i W[o, i] · x[r, i]   for r < n, o < rows
  mop_gemv(m, _grid, [out, W, x, n, rows, cols, accumulate]) {
    const N = int(n), R = int(rows), C = int(cols), y = m.f32(out), w = m.f16(W), xs = m.f32(x);
    for (let r = 0; r < N; r++) {
      for (let o = 0; o < R; o++) {
        let dot = 0;
        for (let i = 0; i < C; i++) dot += fromHalf(w, o * C + i) * xs[r * C + i]!;
        y[r * R + o] = (int(accumulate) ? y[r * R + o]! : 0) + dot;
      }
    }
  },
  // Rotate-half RoPE of q and k at each row's position, then k and v into the cache at [slot][kvHead][position].
  mop_rope_store(m, [rows], [qkv, positions, slots, invFreq, kCache, vCache, heads, kvHeads, headDim, maxContext]) {
    const nh = int(heads), nkv = int(kvHeads), D = int(headDim), M = int(maxContext);
    const a = m.f32(qkv), pos = m.i32(positions), slot = m.i32(slots), freq = m.f32(invFreq), kc = m.f16(kCache), vc = m.f16(vCache);
    const width = (nh + 2 * nkv) * D;
    for (let r = 0; r < rows; r++) {
      const p = pos[r]!;
      for (let head = 0; head < nh + nkv; head++) {
        const start = r * width + head * D; // q heads, then k heads: contiguous
        const x = Float64Array.from(a.subarray(start, start + D));
        for (let i = 0; i < D / 2; i++) {
          const angle = p * freq[i]!;
          a[start + i] = x[i]! * Math.cos(angle) - x[i + D / 2]! * Math.sin(angle);
          a[start + i + D / 2] = x[i + D / 2]! * Math.cos(angle) + x[i]! * Math.sin(angle);
        }
      }
      for (let h = 0; h < nkv; h++) {
        for (let d = 0; d < D; d++) {
          const cacheAt = ((slot[r]! * nkv + h) * M + p) * D + d;
          kc[cacheAt] = numberToF16(a[r * width + (nh + h) * D + d]!);
          vc[cacheAt] = numberToF16(a[r * width + (nh + nkv + h) * D + d]!);
        }
      }
    }
  },
  // out[r, h, :] = softmax(scale · q[r, h] · K[0..position]ᵀ) · V[0..position], K/V of head h's group
  mop_attention(m, [rows, headCount], [out, qkv, kCache, vCache, positions, slots, heads, kvHeads, headDim, maxContext, scale]) {
    const nh = int(heads), nkv = int(kvHeads), D = int(headDim), M = int(maxContext);
    const o = m.f32(out), a = m.f32(qkv), kc = m.f16(kCache), vc = m.f16(vCache), pos = m.i32(positions), slot = m.i32(slots);
    for (let r = 0; r < rows; r++) {
      for (let h = 0; h < headCount; h++) {
        const group = Math.floor((h * nkv) / nh);
        const q = a.subarray(r * (nh + 2 * nkv) * D + h * D);
        const cache = (slot[r]! * nkv + group) * M * D;
        const logits = Array.from({ length: pos[r]! + 1 }, (_, j) => {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[d]! * fromHalf(kc, cache + j * D + d);
          return s * int(scale);
        });
        const top = Math.max(...logits);
        const weights = logits.map((l) => Math.exp(l - top));
        const total = weights.reduce((s, w) => s + w, 0);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          weights.forEach((w, j) => (acc += w * fromHalf(vc, cache + j * D + d)));
          o[(r * nh + h) * D + d] = acc / total;
        }
      }
    }
  },
  // act[r, i] = silu(gu[r, i]) · gu[r, ffn + i]
  mop_silu_mul(m, _grid, [act, gu, n, ffn]) {
    const N = int(n), F = int(ffn), out = m.f32(act), x = m.f32(gu);
    for (let r = 0; r < N; r++) {
      for (let i = 0; i < F; i++) {
        const gate = x[r * 2 * F + i]!;
        out[r * F + i] = (gate / (1 + Math.exp(-gate))) * x[r * 2 * F + F + i]!;
      }
    }
  },
  // dst[k, :] = src[rows[k], :]
  mop_gather_rows(m, [count], [dst, src, rows, width]) {
    const W = int(width), d = m.f32(dst), s = m.f32(src), idx = m.i32(rows);
    for (let k = 0; k < count; k++) d.set(s.subarray(idx[k]! * W, (idx[k]! + 1) * W), k * W);
  },
};
