/**
 * Start the real server in this process on 127.0.0.1:0 with a benchmark model as its dense variant
 * and the admin API on, sized for the load the benchmark will drive (batch slots, context).
 */
import { defaultServerConfig, type ServerConfig } from '../../src/server/config.ts';
import { type RunningServer, startServer } from '../../src/server/main.ts';
import type { ExecutionTarget } from '../../src/runtime/device/device.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';

export interface BenchServerOptions {
  /** The dense checkpoint (see scripts/lib/bench-model.ts loadBenchModel). */
  model: LoadedModel;
  /** Served id of the dense model. */
  denseId: string;
  adminToken: string;
  maxBatch: number;
  context: number;
  threads: number;
  /** Idle pool threads of the served sessions spin (--ort-spin); default off. */
  ortSpin?: boolean;
  /** Device and dtype (or quantized weights) of the served sessions; default CPU float32. */
  target?: ExecutionTarget;
  /** The native CUDA addon file for a `cuda-native` target (--cuda-addon); default: the built one. */
  cudaAddon?: string;
  log: (line: string) => void;
}

export async function startBenchServer(o: BenchServerOptions): Promise<RunningServer> {
  const config: ServerConfig = {
    ...defaultServerConfig,
    host: '127.0.0.1',
    port: 0,
    maxBatch: o.maxBatch,
    maxQueue: 4 * o.maxBatch,
    context: o.context,
    threads: o.threads,
    ortSpin: o.ortSpin ?? false,
    requestTimeoutMs: 0,
    adminToken: o.adminToken,
    servedModelName: o.denseId,
    ...(o.target && { device: o.target.device, dtype: o.target.weights ?? o.target.dtype }),
    ...(o.cudaAddon !== undefined && { cudaAddon: o.cudaAddon }),
    shutdownGraceMs: 10_000,
    // The benchmark repeats its prompts and compares every prefill: served from the prefix cache
    // they would measure the cache, not the model.
    prefixCacheMb: 0,
  };
  return startServer(config, { model: o.model, log: o.log });
}
