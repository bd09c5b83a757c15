import { f16ToNumber, numberToF16 } from '../../src/runtime/model/half.ts';
import type { CudaBinding, LaunchValue } from '../../src/runtime/cuda/native-binding.ts';
import { CudaEmulator } from './kernel-emulator.ts';

/**
 * Each native kernel run on small random inputs on a device and on the JavaScript reference
 * (kernel-emulator.ts), outputs compared. On a GPU this localises a wrong kernel at once, where a
 * logits mismatch of the whole model would not; scripts/gpu-check.ts runs it before anything else.
 * A verification tool, not part of the server: it lives beside the GPU check that runs it.
 */
type HostArray = Float32Array | Int32Array | Uint16Array;

interface KernelCase {
  name: string;
  kernel: string;
  grid: [number, number, number];
  block: [number, number, number];
  shared: number;
  types: string;
  /** Buffers by name; `out` ones are compared after the launch. */
  buffers: Record<string, { data: HostArray; out?: boolean }>;
  /** Launch values: a buffer name (its device pointer) or a number. */
  args: (string | number)[];
  /** Launch twice inside one captured CUDA graph instead of once directly. */
  graphTwice?: boolean;
}

export interface KernelCheckResult {
  name: string;
  pass: boolean;
  /** Largest |device − reference| over the outputs, relative to max(1, largest |reference|). */
  relativeError?: number;
  error?: string;
}

const TOLERANCE = 2e-3;

export function runKernelChecks(device: CudaBinding, reference: CudaBinding = new CudaEmulator()): KernelCheckResult[] {
  device.init();
  return kernelCases().map((c) => {
    try {
      const got = runCase(device, c);
      const want = runCase(reference, c);
      let worst = 0;
      for (const [name, w] of Object.entries(want)) {
        const g = got[name]!;
        let scale = 1;
        for (let i = 0; i < w.length; i++) scale = Math.max(scale, Math.abs(w[i]!));
        for (let i = 0; i < w.length; i++) {
          const d = Math.abs(g[i]! - w[i]!);
          worst = Math.max(worst, Number.isNaN(d) ? Infinity : d / scale);
        }
      }
      return { name: c.name, pass: worst <= TOLERANCE, relativeError: worst };
    } catch (e) {
      return { name: c.name, pass: false, error: String((e as Error).message ?? e).slice(0, 500) };
    }
  });
}

/** Outputs of one case on one binding, widened to numbers (float16 decoded). */
function runCase(cuda: CudaBinding, c: KernelCase): Record<string, Float64Array> {
  const ptrs = new Map<string, bigint>();
  try {
    for (const [name, b] of Object.entries(c.buffers)) {
      const p = cuda.alloc(b.data.byteLength);
      ptrs.set(name, p);
      cuda.upload(p, b.data);
    }
    const values: LaunchValue[] = c.args.map((a) => (typeof a === 'string' ? ptrs.get(a)! : a));
    if (c.graphTwice) {
      cuda.captureBegin();
      cuda.launch(c.kernel, c.grid, c.block, c.shared, c.types, values);
      const graph = cuda.captureEnd();
      cuda.graphLaunch(graph);
      cuda.graphLaunch(graph);
    } else {
      cuda.launch(c.kernel, c.grid, c.block, c.shared, c.types, values);
    }
    cuda.synchronize();
    const out: Record<string, Float64Array> = {};
    for (const [name, b] of Object.entries(c.buffers)) {
      if (!b.out) continue;
      const host = new (b.data.constructor as new (n: number) => HostArray)(b.data.length);
      cuda.download(ptrs.get(name)!, host);
      out[name] = host instanceof Uint16Array ? Float64Array.from(host, f16ToNumber) : Float64Array.from(host);
    }
    return out;
  } finally {
    for (const p of ptrs.values()) cuda.free(p);
  }
}

/** Deterministic inputs: uniform in [-1, 1). */
function noise(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}
const half = (x: Float32Array) => Uint16Array.from(x, numberToF16);
const ints = (...v: number[]) => Int32Array.from(v);

/** A case launched the way most kernels are: one-dimensional blocks of 256 threads, no dynamic shared memory. */
function kernelCase(c: Omit<KernelCase, 'block' | 'shared'> & Partial<Pick<KernelCase, 'block' | 'shared'>>): KernelCase {
  return { block: [256, 1, 1], shared: 0, ...c };
}

export function kernelCases(): KernelCase[] {
  return [...embedAndNormCases(), ...gemvCases(), ...ropeStoreCases(), ...attentionCases(), ...elementwiseCases()];
}

function embedAndNormCases(): KernelCase[] {
  return [
    kernelCase({
      name: 'embed',
      kernel: 'mop_embed',
      grid: [3, 1, 1],
      types: 'pppi',
      buffers: { out: { data: new Float32Array(3 * 24), out: true }, embed: { data: half(noise(50 * 24, 1)) }, tokens: { data: ints(3, 0, 49) } },
      args: ['out', 'embed', 'tokens', 24],
    }),
    ...[false, true].map((inPlace) =>
      kernelCase({
        name: `rmsnorm${inPlace ? ' in place' : ''}`,
        kernel: 'mop_rmsnorm',
        grid: [3, 1, 1],
        types: 'pppif',
        buffers: { x: { data: noise(3 * 300, 2), out: inPlace }, ...(inPlace ? {} : { out: { data: new Float32Array(3 * 300), out: true } }), gamma: { data: half(noise(300, 3)) } },
        args: [inPlace ? 'x' : 'out', 'x', 'gamma', 300, 1e-5],
      }),
    ),
  ];
}

/** 16-byte and scalar loads, overwriting and accumulating, and an accumulating launch replayed twice from one CUDA graph. */
function gemvCases(): KernelCase[] {
  const rows = 37;
  const shapes = [
    [64, 9, 0],
    [64, 1, 1],
    [36, 3, 0],
    [36, 10, 1],
  ] as const;
  return [
    ...shapes.map(([cols, n, accumulate]) =>
      kernelCase({
        name: `gemv ${n}×${cols} → ${rows}${accumulate ? ' +=' : ''} (${cols % 8 === 0 ? '16-byte' : 'scalar'} loads)`,
        kernel: 'mop_gemv',
        grid: [Math.ceil(rows / 8), 1, 1],
        types: 'pppiiii',
        buffers: { y: { data: noise(n * rows, 4), out: true }, w: { data: half(noise(rows * cols, 5)) }, x: { data: noise(n * cols, 6) } },
        args: ['y', 'w', 'x', n, rows, cols, accumulate],
      }),
    ),
    kernelCase({
      name: 'gemv += replayed twice from one CUDA graph',
      kernel: 'mop_gemv',
      grid: [2, 1, 1],
      types: 'pppiiii',
      buffers: { y: { data: noise(2 * 16, 7), out: true }, w: { data: half(noise(16 * 32, 8)) }, x: { data: noise(2 * 32, 9) } },
      args: ['y', 'w', 'x', 2, 16, 32, 1],
      graphTwice: true,
    }),
  ];
}

function ropeStoreCases(): KernelCase[] {
  const [heads, kv, D, M] = [4, 2, 16, 8];
  return [
    kernelCase({
      name: 'rope + K/V store',
      kernel: 'mop_rope_store',
      grid: [2, 1, 1],
      block: [128, 1, 1],
      types: 'ppppppiiii',
      buffers: {
        qkv: { data: noise(2 * (heads + 2 * kv) * D, 10), out: true },
        positions: { data: ints(5, 2) },
        slots: { data: ints(1, 0) },
        invFreq: { data: Float32Array.from({ length: D / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / D)) },
        k: { data: new Uint16Array(2 * kv * M * D), out: true },
        v: { data: new Uint16Array(2 * kv * M * D), out: true },
      },
      args: ['qkv', 'positions', 'slots', 'invFreq', 'k', 'v', heads, kv, D, M],
    }),
  ];
}

/** Head sizes 64 and 8, over a cache of 40 positions. */
function attentionCases(): KernelCase[] {
  const [heads, kv, M] = [4, 2, 40];
  return [64, 8].map((D) =>
    kernelCase({
      name: `attention, head size ${D}`,
      kernel: 'mop_attention',
      grid: [2, heads, 1],
      shared: (32 + 256 + M) * 4,
      types: 'ppppppiiiif',
      buffers: {
        out: { data: new Float32Array(2 * heads * D), out: true },
        qkv: { data: noise(2 * (heads + 2 * kv) * D, 11) },
        k: { data: half(noise(2 * kv * M * D, 12)) },
        v: { data: half(noise(2 * kv * M * D, 13)) },
        positions: { data: ints(37, 3) },
        slots: { data: ints(0, 1) },
      },
      args: ['out', 'qkv', 'k', 'v', 'positions', 'slots', heads, kv, D, M, 1 / Math.sqrt(D)],
    }),
  );
}

function elementwiseCases(): KernelCase[] {
  return [
    kernelCase({
      name: 'silu · up',
      kernel: 'mop_silu_mul',
      grid: [Math.ceil(300 / 256), 1, 1],
      types: 'ppii',
      buffers: { act: { data: new Float32Array(3 * 100), out: true }, gu: { data: noise(3 * 200, 14) } },
      args: ['act', 'gu', 3, 100],
    }),
    kernelCase({
      name: 'gather rows',
      kernel: 'mop_gather_rows',
      grid: [2, 1, 1],
      types: 'pppi',
      buffers: { dst: { data: new Float32Array(2 * 20), out: true }, src: { data: noise(5 * 20, 15) }, rows: { data: ints(4, 1) } },
      args: ['dst', 'src', 'rows', 20],
    }),
  ];
}
