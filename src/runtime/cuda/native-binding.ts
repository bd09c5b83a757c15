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

/** Where `npm run build:cuda` puts the addon; MOP_CUDA_ADDON overrides. */
export function nativeAddonPath(): string {
  return process.env.MOP_CUDA_ADDON ?? join(packageRoot(), 'build', 'cuda', 'mop_cuda.node');
}

export type BindingLoad = { binding: CudaBinding; probe: NativeProbe } | { binding: null; reason: string };

let loaded: BindingLoad | undefined;

/** Load the addon once; when it is missing or the driver is unusable, `reason` says what to do. */
export function loadCudaBinding(): BindingLoad {
  if (loaded) return loaded;
  const path = nativeAddonPath();
  if (!existsSync(path)) {
    loaded = { binding: null, reason: `the native CUDA addon is not built (${path} is missing): run 'npm run build:cuda' on a machine with the CUDA toolkit (nvcc)` };
    return loaded;
  }
  const binding = createRequire(import.meta.url)(path) as CudaBinding;
  const probe = binding.probe();
  loaded = probe.ok ? { binding, probe } : { binding: null, reason: probe.error };
  return loaded;
}
