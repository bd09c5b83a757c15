import { f16BitsToF32Bits } from '../../src/runtime/model/half.ts';
import type { CudaBinding, CudaGraph, LaunchValue, NativeProbe } from '../../src/runtime/cuda/native-binding.ts';

/**
 * A CudaBinding that runs src/runtime/cuda/native/kernels.cu's kernels as plain JavaScript, one
 * function per kernel with the same arguments and arithmetic (float32 via Math.fround, float16
 * storage). It checks everything TypeScript decides (buffer sizes, argument order, launch grids,
 * cache layout, graph replay) on a machine without a GPU; the CUDA code itself is not run. On a GPU
 * it is the reference each real kernel is compared with (kernel-check.ts). It lives in scripts/,
 * not src/: the server never runs it; the GPU check and the tests do.
 */
export class CudaEmulator implements CudaBinding {
  private memory = new Map<bigint, ArrayBuffer>();
  private next = 0x1000n;
  private capture: (() => void)[] | null = null;
  launches = 0;
  graphLaunches = 0;

  probe(): NativeProbe {
    return { ok: true, driverVersion: 13000, name: 'emulator', computeCapability: '9.0', memoryBytes: 2 ** 34 };
  }
  init(): void {}
  alloc(bytes: number): bigint {
    this.notCapturing('alloc');
    const p = this.next;
    this.memory.set(p, new ArrayBuffer(Math.max(bytes, 1)));
    this.next += BigInt(Math.ceil(Math.max(bytes, 1) / 256) * 256 + 256);
    return p;
  }
  free(ptr: bigint): void {
    this.notCapturing('free');
    if (!this.memory.delete(ptr)) throw new Error(`free of unknown pointer ${ptr}`);
  }
  upload(ptr: bigint, data: ArrayBufferView): void {
    this.notCapturing('upload');
    const dst = new Uint8Array(this.buf(ptr));
    if (data.byteLength > dst.byteLength) throw new Error(`upload of ${data.byteLength} bytes into ${dst.byteLength}`);
    dst.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  download(ptr: bigint, into: ArrayBufferView): void {
    this.notCapturing('download');
    const src = new Uint8Array(this.buf(ptr));
    if (into.byteLength > src.byteLength) throw new Error(`download of ${into.byteLength} bytes from ${src.byteLength}`);
    new Uint8Array(into.buffer, into.byteOffset, into.byteLength).set(src.subarray(0, into.byteLength));
  }
  setMaxDynamicShared(): void {}
  synchronize(): void {
    this.notCapturing('synchronize');
  }

  /** Copies, allocations and synchronisation are illegal inside a CUDA stream capture. */
  private notCapturing(what: string): void {
    if (this.capture) throw new Error(`${what} during a CUDA graph capture`);
  }
  captureBegin(): void {
    this.capture = [];
  }
  captureEnd(): CudaGraph {
    const steps = this.capture ?? [];
    this.capture = null;
    return steps as unknown as CudaGraph;
  }
  graphLaunch(graph: CudaGraph): void {
    this.graphLaunches++;
    for (const run of graph as unknown as (() => void)[]) run();
  }

  launch(kernel: string, grid: [number, number, number], block: [number, number, number], shared: number, types: string, values: LaunchValue[]): void {
    if (types.length !== values.length) throw new Error(`${kernel}: ${types.length} types for ${values.length} values`);
    if (kernel === 'mop_attention') {
      // The kernel's shared layout: 32 reduction floats, blockDim partial sums, then maxContext scores.
      if (block[0] !== 256) throw new Error(`mop_attention wants 256 threads, got ${block[0]}`);
      if (shared < (32 + block[0] + Number(values[9])) * 4) throw new Error(`mop_attention: ${shared} shared bytes are too few`);
    }
    if (kernel === 'mop_gemv' && block[0] !== 8 * 32) throw new Error(`mop_gemv wants 8 warps, got ${block[0]} threads`);
    const expected = signatures[kernel];
    if (!expected) throw new Error(`no kernel ${kernel}`);
    if (expected !== types) throw new Error(`${kernel}: argument types '${types}', the kernel takes '${expected}'`);
    const run = () => {
      this.launches++;
      kernels[kernel]!(this, grid, values);
    };
    if (this.capture) this.capture.push(run);
    else run();
  }

  buf(ptr: LaunchValue | undefined): ArrayBuffer {
    const b = this.memory.get(ptr as bigint);
    if (!b) throw new Error(`unknown device pointer ${ptr}`);
    return b;
  }
  f32(ptr: LaunchValue | undefined): Float32Array {
    return new Float32Array(this.buf(ptr));
  }
  i32(ptr: LaunchValue | undefined): Int32Array {
    return new Int32Array(this.buf(ptr));
  }
  f16(ptr: LaunchValue | undefined): Uint16Array {
    return new Uint16Array(this.buf(ptr));
  }
}

const f = Math.fround;
const bits = new Uint32Array(1);
const asFloat = new Float32Array(bits.buffer);
function half(h: number): number {
  bits[0] = f16BitsToF32Bits(h);
  return asFloat[0]!;
}
function toHalf(x: number): number {
  // float32 → binary16 bits, round to nearest even (cuda_fp16's __float2half)
  asFloat[0] = x;
  const v = bits[0]!;
  const sign = (v >>> 16) & 0x8000;
  const exp = (v >>> 23) & 0xff;
  const man = v & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = man | 0x800000;
    const shift = 14 - e;
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

const signatures: Record<string, string> = {
  mop_embed: 'pppi',
  mop_rmsnorm: 'pppif',
  mop_gemv: 'pppiiii',
  mop_rope_store: 'ppppppiiii',
  mop_attention: 'ppppppiiiif',
  mop_silu_mul: 'ppii',
  mop_gather_rows: 'pppi',
};

type Kernel = (e: CudaEmulator, grid: [number, number, number], v: LaunchValue[]) => void;
const n = (v: LaunchValue) => Number(v);

const kernels: Record<string, Kernel> = {
  mop_embed(e, grid, [out, embed, tokens, hidden]) {
    const o = e.f32(out), w = e.f16(embed), t = e.i32(tokens), H = n(hidden!);
    for (let r = 0; r < grid[0]; r++) for (let i = 0; i < H; i++) o[r * H + i] = half(w[t[r]! * H + i]!);
  },
  mop_rmsnorm(e, grid, [out, input, gamma, hidden, eps]) {
    const o = e.f32(out), x = e.f32(input), g = e.f16(gamma), H = n(hidden!);
    for (let r = 0; r < grid[0]; r++) {
      let ss = 0;
      for (let i = 0; i < H; i++) ss = f(ss + f(x[r * H + i]! * x[r * H + i]!));
      const scale = f(1 / Math.sqrt(f(f(ss / H) + f(n(eps!)))));
      for (let i = 0; i < H; i++) o[r * H + i] = f(f(x[r * H + i]! * scale) * half(g[i]!));
    }
  },
  mop_gemv(e, grid, [out, W, x, rows, rowsOut, cols, accumulate]) {
    const y = e.f32(out), w = e.f16(W), xs = e.f32(x), R = n(rows!), C = n(cols!);
    const O = Math.min(n(rowsOut!), grid[0] * 8); // one warp per output row, 8 per block
    const wf = new Float32Array(C);
    for (let o = 0; o < O; o++) {
      for (let c = 0; c < C; c++) wf[c] = half(w[o * C + c]!);
      for (let r = 0; r < R; r++) {
        let s = 0;
        for (let c = 0; c < C; c++) s += wf[c]! * xs[r * C + c]!;
        y[r * O + o] = n(accumulate!) ? f(y[r * O + o]! + s) : f(s);
      }
    }
  },
  mop_rope_store(e, grid, [qkv, positions, slots, invFreq, kCache, vCache, heads, kvHeads, headDim, maxContext]) {
    const QKV = e.f32(qkv), pos = e.i32(positions), sl = e.i32(slots), inv = e.f32(invFreq), kc = e.f16(kCache), vc = e.f16(vCache);
    const nh = n(heads!), nkv = n(kvHeads!), D = n(headDim!), M = n(maxContext!), half2 = D / 2;
    const rotate = (a: Float32Array, base: number, count: number, p: number) => {
      for (let h = 0; h < count; h++) {
        for (let i = 0; i < half2; i++) {
          const angle = f(p * inv[i]!);
          const s = Math.sin(angle), c = Math.cos(angle);
          const at = base + h * D + i;
          const x1 = a[at]!, x2 = a[at + half2]!;
          a[at] = f(x1 * c - x2 * s);
          a[at + half2] = f(x2 * c + x1 * s);
        }
      }
    };
    const width = (nh + 2 * nkv) * D;
    for (let r = 0; r < grid[0]; r++) {
      const p = pos[r]!;
      const q = r * width, k = q + nh * D, v = k + nkv * D;
      rotate(QKV, q, nh, p);
      rotate(QKV, k, nkv, p);
      const slotBase = sl[r]! * nkv * M * D;
      for (let t = 0; t < nkv * D; t++) {
        const h = Math.floor(t / D), d = t % D;
        const at = slotBase + (h * M + p) * D + d;
        kc[at] = toHalf(QKV[k + t]!);
        vc[at] = toHalf(QKV[v + t]!);
      }
    }
  },
  mop_attention(e, grid, [out, qkv, kCache, vCache, positions, slots, heads, kvHeads, headDim, maxContext, scale]) {
    const O = e.f32(out), Q = e.f32(qkv), kc = e.f16(kCache), vc = e.f16(vCache), pos = e.i32(positions), sl = e.i32(slots);
    const nh = n(heads!), nkv = n(kvHeads!), D = n(headDim!), M = n(maxContext!), sc = f(n(scale!));
    for (let r = 0; r < grid[0]; r++) {
      for (let h = 0; h < grid[1]; h++) {
        const kvh = Math.floor(h / (nh / nkv));
        const len = pos[r]! + 1;
        const qh = r * (nh + 2 * nkv) * D + h * D;
        const oh = (r * nh + h) * D;
        const base = (sl[r]! * nkv + kvh) * M * D;
        const scores = new Float64Array(len);
        let m = -Infinity;
        for (let j = 0; j < len; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += Q[qh + d]! * half(kc[base + j * D + d]!);
          scores[j] = f(f(s) * sc);
          m = Math.max(m, scores[j]!);
        }
        let sum = 0;
        for (let j = 0; j < len; j++) {
          scores[j] = Math.exp(scores[j]! - m);
          sum += scores[j]!;
        }
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < len; j++) acc += scores[j]! * half(vc[base + j * D + d]!);
          O[oh + d] = f(acc / sum);
        }
      }
    }
  },
  mop_silu_mul(e, grid, [act, gu, rows, ffn]) {
    const a = e.f32(act), x = e.f32(gu), F = n(ffn!);
    for (let i = 0; i < Math.min(n(rows!) * F, grid[0] * 256); i++) {
      const r = Math.floor(i / F), c = i % F;
      const g = x[r * 2 * F + c]!;
      a[i] = f(f(g / f(1 + Math.exp(-g))) * x[r * 2 * F + F + c]!);
    }
  },
  mop_gather_rows(e, grid, [dst, src, rows, width]) {
    const d = e.f32(dst), s = e.f32(src), r = e.i32(rows), W = n(width!);
    for (let k = 0; k < grid[0]; k++) for (let i = 0; i < W; i++) d[k * W + i] = s[r[k]! * W + i]!;
  },
};
