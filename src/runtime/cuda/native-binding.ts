import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from '../model/load.ts';

/** What the native addon (native/addon.cc) says about this machine, without throwing. */
export type NativeProbe =
  | { ok: true; driverVersion: number; name: string; computeCapability: string; memoryBytes: number }
  | { ok: false; error: string };

/** An instantiated CUDA graph (opaque). */
export type CudaGraph = { readonly __cudaGraph: unique symbol };

/** Argument types of `launch`: p = device pointer (bigint), i = int32, f = float32. */
export type LaunchValue = bigint | number;

/** The addon's functions: device memory, kernel launches by name, CUDA graph capture. */
export interface CudaBinding {
  probe(): NativeProbe;
  init(): void;
  alloc(bytes: number): bigint;
  free(ptr: bigint): void;
  upload(ptr: bigint, data: ArrayBufferView): void;
  download(ptr: bigint, into: ArrayBufferView): void;
  launch(kernel: string, grid: [number, number, number], block: [number, number, number], sharedBytes: number, types: string, values: LaunchValue[]): void;
  setMaxDynamicShared(kernel: string, bytes: number): void;
  synchronize(): void;
  captureBegin(): void;
  captureEnd(): CudaGraph;
  graphLaunch(graph: CudaGraph): void;
}

/** Where `npm run build:cuda` puts the addon; `--cuda-addon` (MOP_CUDA_ADDON) names another file. */
export function defaultAddonPath(): string {
  return join(packageRoot(), 'build', 'cuda', 'mop_cuda.node');
}

export type BindingLoad = { binding: CudaBinding; probe: NativeProbe } | { binding: null; reason: string };

// A native addon stays loaded for the life of the process: load each file once.
const loaded = new Map<string, BindingLoad>();

/** Load the addon at `path` once; when it is missing or the driver is unusable, `reason` says what to do. */
export function loadCudaBinding(path: string = defaultAddonPath()): BindingLoad {
  const known = loaded.get(path);
  if (known) return known;
  const load = readBinding(path);
  loaded.set(path, load);
  return load;
}

function readBinding(path: string): BindingLoad {
  if (!existsSync(path)) {
    return { binding: null, reason: `the native CUDA addon is not built (${path} is missing): run 'npm run build:cuda' on a machine with the CUDA toolkit (nvcc), or name the built file with --cuda-addon` };
  }
  const binding = createRequire(import.meta.url)(path) as CudaBinding;
  const probe = binding.probe();
  return probe.ok ? { binding, probe } : { binding: null, reason: probe.error };
}
