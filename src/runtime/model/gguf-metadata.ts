import { type GgufFile, type GgufKv, GgufType, type GgufValue } from './gguf-container.ts';
import { ModelFormatError } from './spec.ts';

/** The shortest decimal that rounds to this float32 (GGUF stores 1e-5 as 9.99999974e-6). */
export function shortestF32(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const c = Number(x.toPrecision(p));
    if (Math.fround(c) === x) return c;
  }
  return x;
}

/** Typed access to GGUF metadata: keys starting with '.' are under `prefix`; a wrong type is a ModelFormatError. */
export class GgufMetadata {
  constructor(
    private readonly g: GgufFile,
    private readonly prefix: string,
  ) {}
  private kv(key: string): GgufKv | undefined {
    return this.g.metadata.get(this.full(key));
  }
  private full(key: string): string {
    return key.startsWith('.') ? this.prefix + key : key;
  }
  private bad(key: string, want: string): ModelFormatError {
    return new ModelFormatError(`${this.g.file}: metadata ${this.full(key)} should be ${want}, got ${JSON.stringify(this.kv(key)?.value, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
  }
  private toNum(v: GgufValue, type: number, key: string): number {
    if (typeof v === 'number') return type === GgufType.FLOAT32 ? shortestF32(v) : v;
    throw this.bad(key, 'a number');
  }
  num(key: string): number | undefined {
    const kv = this.kv(key);
    return kv === undefined ? undefined : this.toNum(kv.value, kv.type, key);
  }
  reqNum(key: string): number {
    const v = this.num(key);
    if (v === undefined) throw new ModelFormatError(`${this.g.file}: missing metadata ${this.full(key)}`);
    return v;
  }
  /** A number, or a per-layer array of numbers. */
  numOrArr(key: string): number | number[] | undefined {
    const kv = this.kv(key);
    if (kv === undefined) return undefined;
    if (Array.isArray(kv.value)) return kv.value.map((v) => this.toNum(v, kv.itemType ?? -1, key));
    return this.toNum(kv.value, kv.type, key);
  }
  rawNumArr(key: string): number[] | undefined {
    return this.typed(key, 'an array of numbers', (v): v is number[] => Array.isArray(v) && v.every((x) => typeof x === 'number'));
  }
  str(key: string): string | undefined {
    return this.typed(key, 'a string', (v): v is string => typeof v === 'string');
  }
  strArr(key: string): string[] | undefined {
    return this.typed(key, 'an array of strings', (v): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string'));
  }
  bool(key: string): boolean | undefined {
    return this.typed(key, 'a boolean', (v): v is boolean => typeof v === 'boolean');
  }
  /** The value of `key` if present, checked to be what `is` accepts (`want` says what, in the error). */
  private typed<T extends GgufValue>(key: string, want: string, is: (v: GgufValue) => v is T): T | undefined {
    const kv = this.kv(key);
    if (kv === undefined) return undefined;
    if (!is(kv.value)) throw this.bad(key, want);
    return kv.value;
  }
}
