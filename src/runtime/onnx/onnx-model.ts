import { encodeF16 } from '../model/half.ts';
import { ProtoMessage } from './protobuf-writer.ts';

/** ONNX TensorProto.DataType values we use. */
export const DataType = { float: 1, uint8: 2, int32: 6, int64: 7, float16: 10, bfloat16: 16 } as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

/** An attribute value, tagged with its ONNX type so 1 (INT) and 1.0 (FLOAT) never get confused. */
export type Attribute =
  | { f: number }
  | { i: number }
  | { s: string }
  | { ints: number[] }
  | { floats: number[] }
  | { t: ConstantTensor };

export interface ConstantTensor {
  dims: number[];
  dataType: DataTypeCode;
  /** Little-endian element bytes. */
  raw: Uint8Array;
}

/** Element type of a graph's weights and activations: float32 on CPU, float16 on GPUs. */
export type FloatType = 'float32' | 'float16';

/** ONNX type code of a FloatType. */
export function floatTypeCode(t: FloatType): DataTypeCode {
  return t === 'float16' ? DataType.float16 : DataType.float;
}

/**
 * An initializer stored outside the ModelProto: ONNX Runtime reads `data` for the tensor whose
 * external location is `path` (sessionOptions.externalData), so no protobuf ever holds the
 * weights and models past protobuf's 2 GiB limit (a 1B model in float32) still load.
 */
export interface ExternalData {
  path: string;
  data: Uint8Array;
}

/** A serialised model plus the weights it references. */
export interface OnnxModel {
  bytes: Uint8Array;
  externalData: ExternalData[];
}

/** Initializers at least this large go to external data; small constants stay inline. */
const EXTERNAL_MIN_BYTES = 1024;

/** A dimension: a fixed size, or a symbolic name shared between inputs and outputs. */
export type Dim = number | string;

interface ValueInfo {
  name: string;
  dataType: DataTypeCode;
  dims: Dim[];
}

/**
 * An ONNX graph under construction. `node` returns its output names so graphs read as dataflow;
 * names are made unique with a counter, so builders never have to invent them.
 */
export class OnnxGraphBuilder {
  private readonly nodes: ProtoMessage[] = [];
  private readonly initializers: ProtoMessage[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly external: ExternalData[] = [];
  private counter = 0;

  constructor(private readonly name: string) {}

  input(name: string, dataType: DataTypeCode, dims: Dim[]): string {
    this.inputs.push({ name, dataType, dims });
    return name;
  }

  output(name: string, dataType: DataTypeCode, dims: Dim[]): void {
    this.outputs.push({ name, dataType, dims });
  }

  initializer(name: string, t: ConstantTensor): string {
    if (t.raw.byteLength < EXTERNAL_MIN_BYTES) {
      this.initializers.push(tensorProto(t, name));
    } else {
      const path = `weights/${this.external.length}`;
      this.external.push({ path, data: t.raw });
      this.initializers.push(externalTensorProto(t, name, path));
    }
    return name;
  }

  /** A float tensor stored as `type` (float16 rounds to nearest even). */
  tensorInitializer(name: string, dims: number[], data: Float32Array, type: FloatType): string {
    if (type === 'float32') return this.floatInitializer(name, dims, data);
    return this.initializer(name, { dims, dataType: DataType.float16, raw: encodeF16(data) });
  }

  floatInitializer(name: string, dims: number[], data: Float32Array): string {
    return this.initializer(name, { dims, dataType: DataType.float, raw: bytesOf(data) });
  }

  int64Initializer(name: string, values: number[]): string {
    const raw = new BigInt64Array(values.map((v) => BigInt(v)));
    return this.initializer(name, { dims: [values.length], dataType: DataType.int64, raw: bytesOf(raw) });
  }

  /** Add a node; `outputs` are explicit names or a count of fresh names. Returns the output names. */
  node(
    opType: string,
    inputs: string[],
    outputs: string[] | number = 1,
    attributes: Record<string, Attribute> = {},
    domain = '',
  ): string[] {
    const id = this.counter++;
    const outNames = typeof outputs === 'number' ? Array.from({ length: outputs }, (_, k) => `${opType}_${id}_${k}`) : outputs;
    const m = new ProtoMessage();
    for (const i of inputs) m.string(1, i);
    for (const o of outNames) m.string(2, o);
    m.string(3, `${opType}_${id}`);
    m.string(4, opType);
    for (const [name, value] of Object.entries(attributes)) m.message(5, attributeProto(name, value));
    if (domain) m.string(7, domain);
    this.nodes.push(m);
    return outNames;
  }

  /** Single-output convenience. */
  op(opType: string, inputs: string[], attributes: Record<string, Attribute> = {}, domain = ''): string {
    return this.node(opType, inputs, 1, attributes, domain)[0]!;
  }

  /** Serialise as a ModelProto plus the external weights it references. */
  toModel(opsets: Record<string, number>, producer = 'mop-serve'): OnnxModel {
    return { bytes: this.toModelProto(opsets, producer), externalData: [...this.external] };
  }

  private toModelProto(opsets: Record<string, number>, producer: string): Uint8Array {
    const g = new ProtoMessage();
    for (const n of this.nodes) g.message(1, n);
    g.string(2, this.name);
    for (const t of this.initializers) g.message(5, t);
    for (const v of this.inputs) g.message(11, valueInfoProto(v));
    for (const v of this.outputs) g.message(12, valueInfoProto(v));
    const model = new ProtoMessage();
    model.int(1, 10); // IR version 10 (ONNX 1.16+)
    model.string(2, producer);
    model.message(7, g);
    for (const [domain, version] of Object.entries(opsets)) {
      const o = new ProtoMessage();
      if (domain) o.string(1, domain);
      o.int(2, version);
      model.message(8, o);
    }
    return model.toBytes();
  }
}

export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function tensorProto(t: ConstantTensor, name?: string): ProtoMessage {
  const m = new ProtoMessage();
  if (t.dims.length) m.packedInts(1, t.dims);
  m.int(2, t.dataType);
  if (name) m.string(8, name);
  m.bytes(9, t.raw);
  return m;
}

function externalTensorProto(t: ConstantTensor, name: string, path: string): ProtoMessage {
  const m = new ProtoMessage();
  if (t.dims.length) m.packedInts(1, t.dims);
  m.int(2, t.dataType);
  m.string(8, name);
  const entry = (key: string, value: string): ProtoMessage => new ProtoMessage().string(1, key).string(2, value);
  m.message(13, entry('location', path));
  m.message(13, entry('offset', '0'));
  m.message(13, entry('length', String(t.raw.byteLength)));
  m.int(14, 1); // data_location = EXTERNAL
  return m;
}

function attributeProto(name: string, a: Attribute): ProtoMessage {
  const m = new ProtoMessage();
  m.string(1, name);
  if ('f' in a) m.float(2, a.f).int(20, 1);
  else if ('i' in a) m.int(3, a.i).int(20, 2);
  else if ('s' in a) m.string(4, a.s).int(20, 3);
  else if ('t' in a) m.message(5, tensorProto(a.t)).int(20, 4);
  else if ('floats' in a) m.packedFloats(7, a.floats).int(20, 6);
  else m.packedInts(8, a.ints).int(20, 7);
  return m;
}

function valueInfoProto(v: ValueInfo): ProtoMessage {
  const shape = new ProtoMessage();
  for (const d of v.dims) {
    const dim = new ProtoMessage();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoMessage().int(1, v.dataType).message(2, shape);
  const type = new ProtoMessage().message(1, tensorType);
  return new ProtoMessage().string(1, v.name).message(2, type);
}
