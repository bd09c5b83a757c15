import { StoreInputError } from './errors.ts';

/** What can be hashed as JSON: the recipe and everything inside it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue | undefined };

/**
 * JSON with object keys sorted at every level and no whitespace, so equal values always give equal
 * bytes (the basis of content addressing). Properties whose value is `undefined` are left out, as
 * JSON.stringify does; anything JSON cannot round-trip exactly (NaN, ±Infinity, undefined in an
 * array, Maps, typed arrays, class instances, bigints) is refused with the path that holds it,
 * rather than silently turned into something that would hash like a different recipe. `name` is
 * the root's name in those messages.
 */
export function canonicalJson(value: unknown, name = '$'): string {
  return encode(value, name);
}

function encode(value: unknown, path: string): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new StoreInputError(`${path} is ${value}, which JSON cannot represent`);
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        return `[${value.map((v, i) => {
          if (v === undefined) throw new StoreInputError(`${path}[${i}] is undefined, which JSON cannot represent`);
          return encode(v, `${path}[${i}]`);
        }).join(',')}]`;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new StoreInputError(`${path} is a ${proto?.constructor?.name ?? 'non-plain object'}; only plain objects, arrays, strings, finite numbers, booleans and null can be hashed`);
      }
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record).filter((k) => record[k] !== undefined).sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${encode(record[k], `${path}.${k}`)}`).join(',')}}`;
    }
    default:
      throw new StoreInputError(`${path} is a ${typeof value}, which JSON cannot represent`);
  }
}
