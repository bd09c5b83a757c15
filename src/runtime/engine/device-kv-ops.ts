import * as ort from 'onnxruntime-node';
import { createOrtSession } from '../device/ort-session.ts';
import type { OrtDeviceName } from '../device/device.ts';
import { DataType, type FloatType, floatTypeCode, OnnxGraphBuilder } from '../onnx/onnx-model.ts';

/**
 * Cache maintenance that never leaves the GPU: small weightless ONNX graphs run on the cache's
 * device whose outputs stay there (onnxruntime-node can hand a GPU buffer from one session to
 * another). Each op takes one [batch, kvHeads, capacity, headDim] cache tensor.
 */
export class DeviceKvOps {
  private constructor(
    private readonly sessions: { zeros: ort.InferenceSession; grow: ort.InferenceSession; shrink: ort.InferenceSession; take: ort.InferenceSession; put: ort.InferenceSession },
  ) {}

  static async create(device: OrtDeviceName, dtype: FloatType): Promise<DeviceKvOps> {
    const T = floatTypeCode(dtype);
    const dims = ['b', 'h', 'c', 'd'];
    const make = async (name: string, build: (g: OnnxGraphBuilder) => void): Promise<ort.InferenceSession> => {
      const g = new OnnxGraphBuilder(name);
      build(g);
      g.output('y', T, dims);
      return createOrtSession(g.toModel({ '': 21 }), device, { threads: 1, outputLocations: { y: 'gpu-buffer' } });
    };
    const int64 = (g: OnnxGraphBuilder, name: string, n: number): string => g.input(name, DataType.int64, [n]);
    const zeroValue = { dims: [1], dataType: T, raw: new Uint8Array(dtype === 'float16' ? 2 : 4) };
    const sessions = {
      zeros: await make('kv_zeros', (g) => void g.node('ConstantOfShape', [int64(g, 'shape', 4)], ['y'], { value: { t: zeroValue } })),
      grow: await make('kv_grow', (g) => void g.node('Pad', [g.input('x', T, dims), int64(g, 'pads', 8)], ['y'], { mode: { s: 'constant' } })),
      shrink: await make('kv_shrink', (g) => void g.node('Slice', [g.input('x', T, dims), int64(g, 'starts', 1), int64(g, 'ends', 1), int64(g, 'axes', 1)], ['y'])),
      take: await make('kv_take', (g) => void g.node('Slice', [g.input('x', T, dims), int64(g, 'starts', 1), int64(g, 'ends', 1), int64(g, 'axes', 1)], ['y'])),
      put: await make('kv_put', (g) => void g.node('ScatterND', [g.input('x', T, dims), g.input('indices', DataType.int64, [1, 1]), g.input('row', T, dims)], ['y'])),
    };
    return new DeviceKvOps(sessions);
  }

  /** A zero-filled tensor of `dims` on the device. */
  async zeros(dims: readonly number[]): Promise<ort.Tensor> {
    return (await this.sessions.zeros.run({ shape: ints(dims) })).y!;
  }

  /** `x` with its capacity axis (2) grown to `capacity`; new positions are zero. */
  async grow(x: ort.Tensor, capacity: number): Promise<ort.Tensor> {
    return (await this.sessions.grow.run({ x, pads: ints([0, 0, 0, 0, 0, 0, capacity - x.dims[2]!, 0]) })).y!;
  }

  /** `x` with its capacity axis cut to `capacity`. */
  async shrink(x: ort.Tensor, capacity: number): Promise<ort.Tensor> {
    return (await this.sessions.shrink.run({ x, starts: ints([0]), ends: ints([capacity]), axes: ints([2]) })).y!;
  }

  /** Batch row `row` of `x`, as a batch of one. */
  async take(x: ort.Tensor, row: number): Promise<ort.Tensor> {
    return (await this.sessions.take.run({ x, starts: ints([row]), ends: ints([row + 1]), axes: ints([0]) })).y!;
  }

  /** `x` with batch row `row` replaced by `rowTensor` (a batch of one). */
  async put(x: ort.Tensor, row: number, rowTensor: ort.Tensor): Promise<ort.Tensor> {
    return (await this.sessions.put.run({ x, indices: new ort.Tensor('int64', BigInt64Array.of(BigInt(row)), [1, 1]), row: rowTensor })).y!;
  }

  async release(): Promise<void> {
    for (const s of Object.values(this.sessions)) await s.release();
  }
}

function ints(values: readonly number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), [values.length]);
}
