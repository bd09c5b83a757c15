/**
 * Start the real server in this process on 127.0.0.1:0 with a benchmark model as its dense variant
 * and the admin API on, sized for the load the benchmark will drive (batch slots, context).
 */
import { defaultServerConfig, type ServerConfig } from '../../src/server/config.ts';
import { type RunningServer, startServer } from '../../src/server/main.ts';
import type { ExecutionTarget } from '../../src/runtime/device/device.ts';
import type { DecoderGraph } from '../../src/runtime/onnx/decoder-graph.ts';
import { createDecoderSession } from '../../src/runtime/engine/create-session.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';

export interface BenchServerOptions {
  /** The dense checkpoint (see models.ts loadBenchModel). */
  model: LoadedModel;
  /** Served id of the dense model. */
  denseId: string;
  adminToken: string;
  maxBatch: number;
  context: number;
  threads: number;
  /** Device and dtype of the served sessions; default CPU float32. */
  target?: ExecutionTarget;
  /** The dense model's graph, already built (for this dtype and at least this context). */
  graph?: DecoderGraph;
  log: (line: string) => void;
}

export async function startBenchServer(o: BenchServerOptions): Promise<RunningServer> {
  const session = await createDecoderSession(o.model.spec, o.model.weights, { maxBatch: o.maxBatch, maxContext: o.context, threads: o.threads, ...(o.target && { target: o.target }), ...(o.graph && { graph: o.graph }) });
  const opened = { model: o.model, tokenizer: createTokenizer(o.model.tokenizer), session, target: session.target, deviceNote: 'benchmark session' };
  const config: ServerConfig = {
    ...defaultServerConfig,
    host: '127.0.0.1',
    port: 0,
    maxBatch: o.maxBatch,
    maxQueue: 4 * o.maxBatch,
    context: o.context,
    threads: o.threads,
    requestTimeoutMs: 0,
    adminToken: o.adminToken,
    servedModelName: o.denseId,
    shutdownGraceMs: 10_000,
  };
  return startServer(config, { opened, log: o.log });
}
